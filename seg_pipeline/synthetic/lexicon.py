"""Word lists for the synthetic company: names, companies, legal forms and phone formats per country."""

from __future__ import annotations

COUNTRIES = ("ES", "DE", "US", "GB", "PL", "FR")
COUNTRY_WEIGHTS = (0.22, 0.2, 0.22, 0.14, 0.1, 0.12)

FIRST_NAMES = {
    "ES": ("María", "José", "Lucía", "Javier", "Carmen", "Álvaro", "Sofía", "Andrés", "Nuria", "Íñigo"),
    "DE": ("Jürgen", "Anna", "Lukas", "Sophie", "Matthias", "Jörg", "Lena", "Stefan", "Käthe", "Felix"),
    "US": ("James", "Emily", "Michael", "Olivia", "David", "Ava", "Daniel", "Madison", "Chris", "Zoë"),
    "GB": ("Oliver", "Amelia", "Harry", "Isla", "George", "Freya", "Jack", "Poppy", "Siobhán", "Rhys"),
    "PL": ("Łukasz", "Agnieszka", "Paweł", "Żaneta", "Michał", "Katarzyna", "Wojciech", "Małgorzata"),
    "FR": ("François", "Chloé", "Amélie", "Julien", "Hélène", "Léo", "Mathéo", "Inès", "Noël", "Céline"),
}
LAST_NAMES = {
    "ES": ("García", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Fernández", "Ruiz", "Núñez"),
    "DE": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Groß", "Köhler"),
    "US": ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "O'Connor"),
    "GB": ("Taylor", "Davies", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Hughes", "Green"),
    "PL": ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowski", "Zieliński"),
    "FR": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Lefèvre", "Moreau", "Girard", "Bonnet"),
}

COMPANY_WORDS_A = (
    "Acme", "Nordic", "Atlas", "Vertex", "Blue", "Iberia", "Summit", "Pioneer", "Orbit", "Cedar",
    "Quantum", "Harbor", "Silver", "Alpine", "Coastal", "Golden", "Urban", "Prime", "Delta", "Nova",
    "Falcon", "Granite", "Maple", "Aurora", "Zenith", "Crystal", "Evergreen", "Bright", "Keystone", "Polar",
)  # fmt: skip
COMPANY_WORDS_B = (
    "Logistics", "Foods", "Systems", "Retail", "Labs", "Textiles", "Energy", "Media", "Consulting",
    "Motors", "Health", "Design", "Analytics", "Builders", "Trading", "Software", "Farms", "Studios",
    "Pharma", "Networks", "Travel", "Robotics", "Furniture", "Outdoor", "Print",
)  # fmt: skip

# Legal forms per country: the canonical spelling first, then variants seen in real CRMs.
LEGAL_FORMS = {
    "ES": (
        ("S.L.", "SL", "S.L", "Sociedad Limitada", "s.l."),
        ("S.A.", "SA", "Sociedad Anónima", "S.A"),
    ),
    "DE": (
        ("GmbH", "GMBH", "G.m.b.H.", "Gesellschaft mit beschränkter Haftung"),
        ("AG", "A.G.", "Aktiengesellschaft"),
    ),
    "US": (
        ("Inc.", "Inc", "INC", "Incorporated"),
        ("LLC", "L.L.C.", "Llc"),
    ),
    "GB": (
        ("Ltd", "Ltd.", "LTD", "Limited"),
        ("PLC", "plc", "Public Limited Company"),
    ),
    "PL": (("Sp. z o.o.", "sp. z o. o.", "Sp z oo", "Spółka z ograniczoną odpowiedzialnością"),),
    "FR": (
        ("SARL", "S.A.R.L.", "Sarl"),
        ("SAS", "S.A.S.", "Société par actions simplifiée"),
    ),
}

EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "gmx.de", "orange.fr")

# National mobile formats: (calling code, national digits). Variants are rendered in generator.py.
PHONE_PLANS = {
    "ES": ("34", 9, "6"),
    "DE": ("49", 11, "15"),
    "US": ("1", 10, "2"),
    "GB": ("44", 10, "7"),
    "PL": ("48", 9, "5"),
    "FR": ("33", 9, "6"),
}

INDUSTRIES = ("retail", "manufacturing", "software", "healthcare", "hospitality", "logistics", "finance")
COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
CHANNELS = ("web", "app", "store", "phone", "sales_rep")
CATEGORIES = ("electronics", "office", "apparel", "home", "software", "services")
PAGES = (
    "/",
    "/pricing",
    "/products",
    "/product/detail",
    "/cart",
    "/checkout",
    "/blog",
    "/support",
    "/account",
)
CANCEL_PAGE = "/account/cancel"
TICKET_TOPICS = ("billing", "technical", "delivery", "account", "cancellation")
TICKET_CHANNELS = ("email", "phone", "chat")
PLANS = ("basic", "pro", "enterprise")
CONTRACTS = ("monthly", "annual", "two_year")
PAYMENT_METHODS = ("card", "transfer", "direct_debit", "paypal")

INVALID_DATE_TEXT = ("2023-02-30", "31/13/2022", "not available", "0000-00-00", "2022-19-07", "yesterday")
CONSENT_TRUE = ("true", "yes", "Y", "1", "TRUE", "Yes")
CONSENT_FALSE = ("false", "no", "N", "0", "FALSE", "No")

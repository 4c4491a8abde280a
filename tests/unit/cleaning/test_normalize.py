"""Matching keys: emails, E.164 phones, company stems with legal forms, and names, alone and at scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.cleaning.normalize import (
    COUNTRY_CALLING_CODES,
    LEGAL_FORM_SPELLINGS,
    NATIONAL_LENGTHS,
    normalize_company,
    normalize_email,
    normalize_name,
    normalize_phone,
)
from seg_pipeline.synthetic.generator import render_phone
from seg_pipeline.synthetic.lexicon import LEGAL_FORMS, PHONE_PLANS

MISSING = [None, np.nan, pd.NA, "", "   ", "\u00a0\t"]
GARBAGE = ["n/a", "12", "@@", "tel: unknown"]


def scalar(value):
    return None if pd.isna(value) else value


def email(value) -> str | None:
    return scalar(normalize_email(pd.Series([value], dtype=object)).iloc[0])


def phone(value, country=None) -> str | None:
    countries = None if country is None else pd.Series([country], dtype=object)
    return scalar(normalize_phone(pd.Series([value], dtype=object), countries).iloc[0])


def company(value) -> tuple[str | None, str | None]:
    row = normalize_company(pd.Series([value], dtype=object)).iloc[0]
    return scalar(row["company_stem"]), scalar(row["legal_form"])


def name(value) -> str | None:
    return scalar(normalize_name(pd.Series([value], dtype=object)).iloc[0])


# --- email ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Maria.Lopez.1a@Gmail.COM ", "maria.lopez.1a@gmail.com"),
        ("maria.lopez.1a@gmail.com", "maria.lopez.1a@gmail.com"),
        ("\u00a0Ana.Ruiz@Outlook.com\u00a0", "ana.ruiz@outlook.com"),
        ("\tJ.Smith+crm@Example.co.UK\n", "j.smith+crm@example.co.uk"),
        ("ＡＮＡ＠ｏｕｔｌｏｏｋ．ｃｏｍ", "ana@outlook.com"),
        ("JÖRG.KÖHLER@GMX.DE", "jörg.köhler@gmx.de"),
    ],
)
def test_email_is_trimmed_and_lowercased(raw, expected):
    assert email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        *GARBAGE,
        "ana@",
        "@outlook.com",
        "ana@localhost",
        "ana@@outlook.com",
        "ana@x@outlook.com",
        "ana ruiz@outlook.com",
        "ana@out look.com",
        "ana\u00a0ruiz@outlook.com",
        "ana@.com",
        "ana@outlook.",
        "ana@outlook..com",
    ],
)
def test_implausible_email_is_missing(raw):
    assert email(raw) is None


@pytest.mark.parametrize("raw", MISSING)
def test_missing_email_stays_missing(raw):
    assert email(raw) is None


def test_email_keeps_index_and_string_dtype():
    result = normalize_email(pd.Series(["A@B.COM", None, "bad"], index=[7, 3, 9]))
    assert result.dtype == "string"
    assert list(result.index) == [7, 3, 9]
    assert result.isna().tolist() == [False, True, True]


# --- phone ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["+34 612 345 678", "+34612345678", "+34-612-345-678", "(+34) 612345678", "0034612345678"]
)
@pytest.mark.parametrize("country", ["ES", "DE", None])
def test_international_phone_formats(raw, country):
    assert phone(raw, country) == "+34612345678"


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("612 345 678", "ES", "+34612345678"),
        ("612345678", "es", "+34612345678"),
        ("0612345678", "FR", "+33612345678"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("07123 456789", "GB", "+447123456789"),
        ("7123 456789", "GB", "+447123456789"),
        ("0151 2345678", "DE", "+491512345678"),
        ("01512 3456789", "DE", "+4915123456789"),
        ("(0151) 2345678", "DE", "+491512345678"),
        ("512 345 678", "PL", "+48512345678"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("212.555.0100", "US", "+12125550100"),
    ],
)
def test_national_phone_gets_country_code(raw, country, expected):
    assert phone(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+44 (0)7123 456789", None, "+447123456789"),
        ("1 212 555 0100", "US", "+12125550100"),
        ("34 612 345 678", "ES", "+34612345678"),
        ("+44 7123 456789", "ES", "+447123456789"),
        ("\u00a0+34\u00a0612\u00a0345\u00a0678 ", None, "+34612345678"),
        ("＋３４ ６１２ ３４５ ６７８", None, "+34612345678"),
    ],
)
def test_phone_variants(raw, country, expected):
    assert phone(raw, country) == expected


@pytest.mark.parametrize("raw", ["612 345 678", "0612345678", "07123 456789", "0151 2345678"])
@pytest.mark.parametrize("country", [None, pd.NA, np.nan, "", "XX"])
def test_national_phone_without_known_country_is_missing(raw, country):
    assert phone(raw, country) is None


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        *((value, "ES") for value in GARBAGE),
        ("+34 612 ABC 678", "ES"),
        ("612 345 678 ext 5", "ES"),
        ("++34612345678", "ES"),
        ("34+612345678", "ES"),
        ("61234567", "ES"),
        ("6123456789", "ES"),
        ("0612 345 678 / 0612 345 679", "FR"),
        ("+1234567", None),
        ("+1234567890123456", None),
        ("+0612345678", None),
        ("00", "ES"),
        ("+", "ES"),
    ],
)
def test_implausible_phone_is_missing(raw, country):
    assert phone(raw, country) is None


@pytest.mark.parametrize("raw", MISSING)
@pytest.mark.parametrize("country", ["ES", None])
def test_missing_phone_stays_missing(raw, country):
    assert phone(raw, country) is None


def test_phone_keeps_index_and_string_dtype():
    index = ["b", "a", "c"]
    result = normalize_phone(
        pd.Series(["612 345 678", "+33612345678", None], index=index),
        pd.Series(["ES", None, "FR"], index=index),
    )
    assert result.dtype == "string"
    assert list(result.index) == index
    assert result.tolist()[:2] == ["+34612345678", "+33612345678"]
    assert pd.isna(result["c"])


def test_phone_country_must_share_the_index():
    with pytest.raises(ValueError, match="same index"):
        normalize_phone(pd.Series(["612345678"], index=[1]), pd.Series(["ES"], index=[0]))


def test_callers_can_add_a_country(monkeypatch):
    monkeypatch.setitem(COUNTRY_CALLING_CODES, "NL", "31")
    monkeypatch.setitem(NATIONAL_LENGTHS, "NL", (9,))
    assert phone("06 12345678", "NL") == "+31612345678"


def test_phone_plans_of_the_generator_are_known():
    for country, (calling_code, length, _) in PHONE_PLANS.items():
        assert COUNTRY_CALLING_CODES[country] == calling_code
        assert length in NATIONAL_LENGTHS[country]


def sample_nationals(length: int, prefix: str) -> list[str]:
    free = length - len(prefix)
    return [prefix + "0" * free, prefix + "1234567890123"[:free], prefix + "9" * free]


@pytest.mark.parametrize("country", sorted(PHONE_PLANS))
def test_every_generator_phone_style_normalizes_to_e164(country):
    calling_code, length, prefix = PHONE_PLANS[country]
    cases = [
        (render_phone(calling_code, national, style), style, f"+{calling_code}{national}")
        for national in sample_nationals(length, prefix)
        for style in range(6)
    ]
    raw = pd.Series([rendered for rendered, _, _ in cases])
    with_country = normalize_phone(raw, pd.Series([country] * len(cases)))
    without_country = normalize_phone(raw)
    for (rendered, style, expected), got, got_alone in zip(cases, with_country, without_country, strict=True):
        assert got == expected, (rendered, style)
        if style == 2:  # national digits only: the country is what makes it a number
            assert pd.isna(got_alone), rendered
        else:
            assert got_alone == expected, (rendered, style)


# --- company ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "Acme S.L.",
        "ACME SL",
        "Acme Sociedad Limitada",
        "acme, s.l.",
        "Acme S.L",
        "Acme s. l.",
        "Acme S.L.U.",
        "Acme SLU",
        "Acme,S.L.",
        "  Acme \t  S.L. ",
        "ＡＣＭＥ ＳＬ",
    ],
)
def test_acme_equivalence_class(raw):
    assert company(raw) == ("acme", "SL")


@pytest.mark.parametrize(
    ("code", "spelling"),
    [(code, spelling) for code, spellings in LEGAL_FORM_SPELLINGS.items() for spelling in spellings],
)
def test_every_legal_form_spelling_maps_to_its_code(code, spelling):
    assert company(f"Nordic Systems {spelling}") == ("nordic systems", code)
    assert company(f"NORDIC SYSTEMS, {spelling.upper()}") == ("nordic systems", code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Nordic Systems GmbH", ("nordic systems", "GMBH")),
        ("NORDIC SYSTEMS G.m.b.H.", ("nordic systems", "GMBH")),
        ("Acme, Inc.", ("acme", "INC")),
        ("Blue Labs", ("blue labs", None)),
        ("Café Núñez S.A.", ("cafe nunez", "SA")),
        ("Sociedad Anonima Ibérica SOCIEDAD ANÓNIMA", ("sociedad anonima iberica", "SA")),
        ("Łódź Foods Sp. z o.o.", ("lodz foods", "SPZOO")),
        ("Müller & Söhne GmbH", ("muller sohne", "GMBH")),
        ("Groß Logistik AG", ("gross logistik", "AG")),
        ("O'Connor’s Ltd.", ("oconnors", "LTD")),
        ("A.B.C. Trading Inc", ("abc trading", "INC")),
        ("Coca-Cola Ltd", ("coca cola", "LTD")),
        ("Acme S.A.S.", ("acme", "SAS")),
        ("Acme S.A.R.L.", ("acme", "SARL")),
        ("Acme Public Limited Company", ("acme", "PLC")),
        ("Acme Public Limited", ("acme public", "LTD")),
        ("Acme Limited Company", ("acme limited company", None)),
        ("Acme SA SL", ("acme sa", "SL")),
    ],
)
def test_company_stem_and_legal_form(raw, expected):
    assert company(raw) == expected


@pytest.mark.parametrize(
    ("raw", "stem"),
    [
        ("Plaza", "plaza"),
        ("Alsa", "alsa"),
        ("Iberia Plaza", "iberia plaza"),
        ("Transportes Alsa", "transportes alsa"),
        ("Salsa Foods", "salsa foods"),
        ("Zinc", "zinc"),
        ("Nordic Zinc", "nordic zinc"),
        ("Maag", "maag"),
        ("Acme Holdings", "acme holdings"),
        ("Casas", "casas"),
    ],
)
def test_names_merely_ending_in_legal_form_letters_are_not_stripped(raw, stem):
    assert company(raw) == (stem, None)


@pytest.mark.parametrize(
    ("raw", "stem"),
    [
        ("S.A.", "sa"),
        ("GmbH", "gmbh"),
        ("Limited", "limited"),
        (", Inc.", "inc"),
        ("- Ltd", "ltd"),
        ("SAS", "sas"),
    ],
)
def test_name_that_is_only_a_legal_form_keeps_it_as_stem(raw, stem):
    assert company(raw) == (stem, None)


@pytest.mark.parametrize("raw", MISSING)
def test_missing_company_stays_missing(raw):
    assert company(raw) == (None, None)


def test_company_frame_keeps_index_and_string_dtypes():
    result = normalize_company(pd.Series(["Acme S.L.", None, "Blue Labs"], index=[4, 4, 2]))
    assert list(result.columns) == ["company_stem", "legal_form"]
    assert list(result.index) == [4, 4, 2]
    assert (result.dtypes == "string").all()
    assert result["company_stem"].tolist()[::2] == ["acme", "blue labs"]
    assert normalize_company(pd.Series([], dtype=object)).dtypes.eq("string").all()


def test_callers_can_add_a_legal_form(monkeypatch):
    monkeypatch.setitem(LEGAL_FORM_SPELLINGS, "KG", ("KG", "Kommanditgesellschaft"))
    assert company("Nordic Kommanditgesellschaft") == ("nordic", "KG")
    assert company("Nordic K.G.") == ("nordic", "KG")


def test_a_spelling_claimed_by_two_forms_is_rejected(monkeypatch):
    monkeypatch.setitem(LEGAL_FORM_SPELLINGS, "XX", ("s l",))
    with pytest.raises(ValueError, match="claimed by SL and XX"):
        normalize_company(pd.Series(["Acme SL"]))


@pytest.mark.parametrize("country", sorted(LEGAL_FORMS))
def test_every_generator_legal_form_spelling_matches_its_canonical_spelling(country):
    codes = set()
    for spellings in LEGAL_FORMS[country]:
        canonical = company(f"Vertex Analytics {spellings[0]}")
        assert canonical[0] == "vertex analytics"
        assert canonical[1] is not None
        codes.add(canonical[1])
        for spelling in spellings:
            assert company(f"Vertex Analytics {spelling}") == canonical, spelling
            assert company(f"VERTEX ANALYTICS {spelling}") == canonical, spelling
    assert len(codes) == len(LEGAL_FORMS[country])


# --- name -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  José   GARCÍA ", "josé garcía"),
        ("Jose\u0301 Garci\u0301a", "josé garcía"),
        ("JÜRGEN\u00a0\u00a0Groß", "jürgen gross"),
        ("Łukasz\tWiśniewski\n", "łukasz wiśniewski"),
        ("ＪＯＳＥ", "jose"),
        ("O'Connor", "o'connor"),
    ],
)
def test_name_is_casefolded_and_keeps_accents(raw, expected):
    assert name(raw) == expected


@pytest.mark.parametrize("raw", MISSING)
def test_missing_name_stays_missing(raw):
    assert name(raw) is None


def test_name_keeps_index_and_string_dtype():
    result = normalize_name(pd.Series(["A  B", None], index=[9, 8]))
    assert result.dtype == "string"
    assert list(result.index) == [9, 8]


# --- at scale ---------------------------------------------------------------------------------------

PHONE_EXAMPLES = [
    ("+34 612 345 678", "ES"),
    ("0034612345678", None),
    ("(+34) 612345678", "DE"),
    ("612 345 678", "ES"),
    ("612 345 678", None),
    ("0612345678", "FR"),
    ("07123 456789", "GB"),
    ("0151 2345678", "DE"),
    ("(212) 555-0100", "US"),
    ("tel: unknown", "ES"),
    ("12", "PL"),
    (None, "ES"),
]
EMAIL_EXAMPLES = ["  Maria.Lopez.1a@Gmail.COM ", "ana@outlook.com", "@@", "n/a", None, "ana@localhost"]
COMPANY_EXAMPLES = [
    "Acme S.L.",
    "ACME SL",
    "acme, s.l.",
    "Nordic Systems GmbH",
    "Blue Labs",
    "Alsa",
    "S.A.",
    None,
]
NAME_EXAMPLES = ["  José   GARCÍA ", "Groß", None, "Łukasz Wiśniewski"]


def repeated(values: list, rows: int) -> pd.Series:
    """``values`` cycled to ``rows`` rows, under a reversed index so alignment mistakes show."""
    picks = np.arange(rows) % len(values)
    return pd.Series([values[i] for i in picks], index=np.arange(rows)[::-1], dtype=object)


def cycled(per_example: list, rows: int) -> list:
    return [per_example[i % len(per_example)] for i in range(rows)]


def test_results_at_scale_equal_the_per_example_results():
    rows = 200_000
    phones = repeated(PHONE_EXAMPLES, rows)
    phone_result = normalize_phone(phones.str[0], phones.str[1])
    assert phone_result.index.equals(phones.index)
    assert [scalar(v) for v in phone_result] == cycled([phone(*example) for example in PHONE_EXAMPLES], rows)

    emails = normalize_email(repeated(EMAIL_EXAMPLES, rows))
    assert [scalar(v) for v in emails] == cycled([email(value) for value in EMAIL_EXAMPLES], rows)

    companies = normalize_company(repeated(COMPANY_EXAMPLES, rows))
    got_companies = [
        (scalar(stem), scalar(form))
        for stem, form in zip(companies["company_stem"], companies["legal_form"], strict=True)
    ]
    assert got_companies == cycled([company(value) for value in COMPANY_EXAMPLES], rows)

    names = normalize_name(repeated(NAME_EXAMPLES, rows))
    assert [scalar(v) for v in names] == cycled([name(value) for value in NAME_EXAMPLES], rows)

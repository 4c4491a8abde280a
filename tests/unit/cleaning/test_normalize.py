"""Matching keys: emails, E.164 phones, company stems with legal forms, and names, alone and at scale.

The examples are real-world formats written for this test, not read from the synthetic generator: the
cleaner must hold on data the project did not write.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seg_pipeline.cleaning.normalize import (
    name_parts,
    normalize_company,
    normalize_email,
    normalize_name,
    normalize_phone,
    parse_phones,
)
from seg_pipeline.config import DEFAULT_EXTRA_LEGAL_FORMS

MISSING = [None, np.nan, pd.NA, "", "   ", "\u00a0\t"]
GARBAGE = ["n/a", "12", "@@", "tel: unknown"]


def scalar(value):
    return None if pd.isna(value) else value


def email(value) -> str | None:
    return scalar(normalize_email(pd.Series([value], dtype=object)).iloc[0])


def phone(value, country=None, default_region=None) -> str | None:
    countries = None if country is None else pd.Series([country], dtype=object)
    return scalar(normalize_phone(pd.Series([value], dtype=object), countries, default_region).iloc[0])


def company(value, extra=DEFAULT_EXTRA_LEGAL_FORMS) -> tuple[str | None, str | None]:
    row = normalize_company(pd.Series([value], dtype=object), extra).iloc[0]
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
        ("01512 3456789", "DE", "+4915123456789"),
        ("030 1234567", "DE", "+49301234567"),
        ("(030) 1234567", "DE", "+49301234567"),
        ("512 345 678", "PL", "+48512345678"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("212.555.0100", "US", "+12125550100"),
        ("06 12345678", "NL", "+31612345678"),
        ("0470 12 34 56", "BE", "+32470123456"),
        ("040-123 45 67", "SE", "+46401234567"),
        ("040 1234567", "FI", "+358401234567"),
        ("912 345 678", "PT", "+351912345678"),
        ("333 123 4567", "IT", "+393331234567"),
        ("(11) 91234-5678", "BR", "+5511912345678"),
        ("090-1234-5678", "JP", "+819012345678"),
        ("0412 345 678", "AU", "+61412345678"),
        ("8 (912) 345-67-89", "RU", "+79123456789"),
        ("612 345 678", "uk", None),  # UK is read as GB, where this is not a number
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


@pytest.mark.parametrize("raw", ["612 345 678", "0612345678", "07123 456789", "01512 3456789"])
@pytest.mark.parametrize("country", [None, pd.NA, np.nan, "", "XX"])
def test_national_phone_without_known_country_is_missing(raw, country):
    assert phone(raw, country) is None


@pytest.mark.parametrize("country", [None, "", "XX"])
def test_default_region_reads_national_numbers_of_rows_without_a_country(country):
    assert phone("030 1234567", country, default_region="DE") == "+49301234567"
    assert phone("030 1234567", "US", default_region="DE") is None  # the row's own country wins


def test_phone_status_flags_invalid_numbers_and_counts_missing_ones():
    result = parse_phones(
        pd.Series(["+34 612 345 678", "612 345 67", None, "tel: unknown"]),
        pd.Series(["ES", "ES", "ES", "ES"]),
    )
    assert result["phone_status"].tolist() == ["valid", "invalid", "missing", "invalid"]
    assert result["phone_e164"].isna().tolist() == [False, True, True, True]


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        *((value, "ES") for value in GARBAGE),
        ("61234567", "ES"),
        ("6123456789", "ES"),
        ("+34 112 345 678", None),  # no Spanish number starts with 1
        ("+49 1234", None),
        ("0612 345 678 / 0612 345 679 / 0612 345 680", "FR"),
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
def test_legal_form_spellings_leave_the_same_stem(raw):
    stem, form = company(raw)
    assert stem == "acme"
    assert form is not None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Nordic Systems GmbH", ("nordic systems", "gmbh")),
        ("NORDIC SYSTEMS G.m.b.H.", ("nordic systems", "gmbh")),
        ("Müller Bau GmbH & Co. KG", ("muller bau", "gmbh co kg")),
        ("Acme, Inc.", ("acme", "inc")),
        ("Blue Labs", ("blue labs", None)),
        ("Café Núñez S.A.", ("cafe nunez", "sa")),
        ("Łódź Foods Sp. z o.o.", ("lodz foods", "sp z oo")),
        ("Łódź Foods sp. z o. o.", ("lodz foods", "sp z oo")),
        ("Groß Logistik AG", ("gross logistik", "ag")),
        ("O'Connor’s Ltd.", ("oconnors", "ltd")),
        ("A.B.C. Trading Inc", ("abc trading", "inc")),
        ("Coca-Cola Ltd", ("coca cola", "ltd")),
        ("Nordic Foods Oy", ("nordic foods", "oy")),
        ("Nokia Oyj", ("nokia", "oyj")),
        ("Fratelli Rossi S.p.A.", ("fratelli rossi", "spa")),
        ("Fratelli Rossi S.r.l.", ("fratelli rossi", "srl")),
        ("Van Dijk B.V.", ("van dijk", "bv")),
        ("Koala Pty Ltd", ("koala", "pty ltd")),
        ("Tanaka K.K.", ("tanaka", "kk")),
        ("Tanaka Kabushiki Kaisha", ("tanaka", "kabushiki kaisha")),
        ("Volvo Cars AB (publ)", ("volvo cars", "ab publ")),
        ("Hansen ApS", ("hansen", "aps")),
        ("Comercial Souza Ltda.", ("comercial souza", "ltda")),
        ("Grupo Azteca S.A. de C.V.", ("grupo azteca", "sa de cv")),
        ("ООО Ромашка", ("romashka", "ooo")),
        ("Shenzhen Bright Co., Ltd.", ("shenzhen bright", "co ltd")),
        ("Acme Gesellschaft mit beschränkter Haftung", ("acme", "gesellschaft mit beschrankter haftung")),
    ],
)
def test_company_stem_and_legal_form(raw, expected):
    assert company(raw) == expected


def test_a_company_can_add_its_own_legal_forms():
    assert company("Nordic Handelsbolag", extra=()) == ("nordic handelsbolag", None)
    assert company("Nordic Handelsbolag", extra=("Handelsbolag",)) == ("nordic", "handelsbolag")


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


# --- name -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  José   GARCÍA ", "jose garcia"),
        ("Jose\u0301 Garci\u0301a", "jose garcia"),
        ("JÜRGEN\u00a0\u00a0Groß", "jurgen gross"),
        ("Łukasz\tWiśniewski\n", "lukasz wisniewski"),
        ("ＪＯＳＥ", "jose"),
        ("O'Connor", "oconnor"),
        ("Jean-Luc Picard", "jean luc picard"),
        ("Дмитрий Иванов", "dmitriy ivanov"),
        ("Smith, John", "john smith"),
        ("Søren Ærø", "soren aero"),
    ],
)
def test_name_is_transliterated_and_casefolded(raw, expected):
    assert name(raw) == expected


@pytest.mark.parametrize("raw", [*MISSING, "...", "--"])
def test_missing_name_stays_missing(raw):
    assert name(raw) is None


def test_name_keeps_index_and_string_dtype():
    result = normalize_name(pd.Series(["A  B", None], index=[9, 8]))
    assert result.dtype == "string"
    assert list(result.index) == [9, 8]


def test_name_parts_take_the_first_and_last_word():
    parts = name_parts(pd.Series(["john ronald smith", "smith", None], dtype="string"))
    assert parts["name_first"].tolist()[:1] == ["john"]
    assert parts["name_last"].tolist()[:2] == ["smith", "smith"]
    assert parts["name_first"].isna().tolist() == [False, True, True]


# --- at scale ---------------------------------------------------------------------------------------

PHONE_EXAMPLES = [
    ("+34 612 345 678", "ES"),
    ("0034612345678", None),
    ("(+34) 612345678", "DE"),
    ("612 345 678", "ES"),
    ("612 345 678", None),
    ("0612345678", "FR"),
    ("07123 456789", "GB"),
    ("01512 3456789", "DE"),
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
    "Nordic Foods Oy",
    "Blue Labs",
    "Alsa",
    "S.A.",
    None,
]
NAME_EXAMPLES = ["  José   GARCÍA ", "Groß", None, "Łukasz Wiśniewski", "Smith, John"]


def repeated(values: list, rows: int) -> pd.Series:
    """``values`` cycled to ``rows`` rows, under a reversed index so alignment mistakes show."""
    picks = np.arange(rows) % len(values)
    return pd.Series([values[i] for i in picks], index=np.arange(rows)[::-1], dtype=object)


def cycled(per_example: list, rows: int) -> list:
    return [per_example[i % len(per_example)] for i in range(rows)]


def test_results_at_scale_equal_the_per_example_results():
    rows = 100_000
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

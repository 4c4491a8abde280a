"""Matching keys for customer records: normalised email, E.164 phone, company stem + legal form, name."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa

COUNTRY_CALLING_CODES: dict[str, str] = {
    "ES": "34",
    "DE": "49",
    "US": "1",
    "GB": "44",
    "PL": "48",
    "FR": "33",
}
# Digits of the national significant number, i.e. after dropping the trunk prefix '0'.
NATIONAL_LENGTHS: dict[str, tuple[int, ...]] = {
    "ES": (9,),
    "DE": (10, 11),
    "US": (10,),
    "GB": (10,),
    "PL": (9,),
    "FR": (9,),
}

LEGAL_FORM_SPELLINGS: dict[str, tuple[str, ...]] = {
    "SL": ("S.L.", "SL", "S.L", "s.l.", "Sociedad Limitada", "S.L.U.", "SLU"),
    "SA": ("S.A.", "SA", "S.A", "Sociedad Anónima", "Sociedad Anonima"),
    "GMBH": ("GmbH", "GMBH", "G.m.b.H.", "Gesellschaft mit beschränkter Haftung"),
    "AG": ("AG", "A.G.", "Aktiengesellschaft"),
    "INC": ("Inc.", "Inc", "INC", "Incorporated"),
    "LLC": ("LLC", "L.L.C.", "Llc"),
    "LTD": ("Ltd", "Ltd.", "LTD", "Limited"),
    "PLC": ("PLC", "plc", "Public Limited Company"),
    "SPZOO": ("Sp. z o.o.", "sp. z o. o.", "Sp z oo", "Spółka z ograniczoną odpowiedzialnością"),
    "SARL": ("SARL", "S.A.R.L.", "Sarl"),
    "SAS": ("SAS", "S.A.S.", "Société par actions simplifiée"),
}

E164_DIGITS = (8, 15)

# Text is held as pyarrow strings so most regexes run natively on RE2; pandas still uses Python's re for a
# few calls. The engines disagree on \s, \w and \d, so the patterns spell character classes out instead.
_ARROW_TEXT = pd.ArrowDtype(pa.string())
# Unicode White_Space: NFKC keeps some of it, and RE2's \s is ASCII-only.
_WHITESPACE_CHARS = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE = f"[{_WHITESPACE_CHARS}]"
_EMAIL = f"[^@{_WHITESPACE_CHARS}]+@[^@.{_WHITESPACE_CHARS}]+(?:[.][^@.{_WHITESPACE_CHARS}]+)+"
_PHONE_SEPARATORS = f"[-./(){_WHITESPACE_CHARS}]"
_COMBINING_MARKS = "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
# ASCII punctuation, Latin-1 symbols and the General Punctuation block; letters of any script survive.
_PUNCTUATION = "[!-/:-@\\[-`{-~\xa1-\xbf\xd7\xf7\u2010-\u205e]"
# Dots and apostrophes join ("A.B.C." is "abc", "O'Neil" is "oneil"); other punctuation separates words.
_JOINING_PUNCTUATION = "['.\u2018\u2019]"
# Letters NFKD leaves intact (no combining mark to drop), so ASCII folding needs them spelt out.
_UNDECOMPOSABLE = {
    "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae", "Æ": "AE",
    "œ": "oe", "Œ": "OE", "ı": "i", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
}  # fmt: skip


def normalize_email(values: pd.Series) -> pd.Series:
    """NFKC, trimmed, lowercased address; NA unless it has one '@', a local part and a dotted domain."""
    emails = _clean_text(values).str.lower()
    return emails.where(_flag(emails.str.fullmatch(_EMAIL))).astype("string")


def normalize_phone(values: pd.Series, country: pd.Series | None = None) -> pd.Series:
    """E.164 ("+34612345678") or NA. National numbers need ``country`` (ISO code per row) for the prefix."""
    text = _clean_text(values)
    # "+44 (0)20 ..." writes the trunk digit after the country code; it is not part of the number.
    compact = text.str.replace("(0)", "", regex=False).str.replace(_PHONE_SEPARATORS, "", regex=True)
    compact = compact.where(_flag(compact.str.fullmatch(r"[+]?[0-9]+")))

    plus = _flag(compact.str.startswith("+"))
    double_zero = _flag(compact.str.startswith("00"))
    international = plus | double_zero
    digits = compact.str.removeprefix("+")
    e164 = ("+" + digits.str.slice(2)).where(double_zero, "+" + digits).where(international)

    if country is not None:
        e164 = e164.fillna(_national_to_e164(digits.where(~international), _iso_codes(country, values)))

    low, high = E164_DIGITS
    valid = _flag(e164.str.fullmatch(f"[+][1-9][0-9]{{{low - 1},{high - 1}}}"))
    return e164.where(valid).astype("string")


def normalize_company(values: pd.Series) -> pd.DataFrame:
    """``company_stem`` (accent-folded, lowercase, no punctuation) and ``legal_form`` (canonical code or NA)."""
    folded = _fold(values)
    suffix, code_by_key = _legal_form_suffix()
    form = folded.str.extract(suffix)["form"]
    stem = _without_punctuation(folded.str.replace(suffix, "", regex=True))
    # A name that is only a legal form plus punctuation (", Inc.") keeps the form as its stem.
    only_form = _flag(form.notna()) & _flag(stem.str.len().eq(0))
    if only_form.any():
        stem[only_form] = _without_punctuation(folded[only_form]).to_numpy()
    form_key = form.where(~only_form).str.replace("[. ]", "", regex=True)
    legal_form = form_key.map(code_by_key, na_action="ignore").astype("string")
    return pd.DataFrame({"company_stem": stem.astype("string"), "legal_form": legal_form})


def normalize_name(values: pd.Series) -> pd.Series:
    """NFKC, trimmed, whitespace collapsed and casefolded; accents are kept. For matching, not display."""
    names = _clean_text(values, casefold=True)
    return names.str.replace(f"{_WHITESPACE}+", " ", regex=True).astype("string")


def _clean_text(values: pd.Series, form: str = "NFKC", casefold: bool = False) -> pd.Series:
    """Unicode-normalised, trimmed text as pyarrow strings; empty becomes NA."""
    # Normalising and casefolding are per-value Python either way, and fastest on Python-backed strings.
    text = values.astype("string").str.normalize(form)
    if casefold:
        text = text.str.casefold()
    text = text.astype(_ARROW_TEXT).str.strip(_WHITESPACE_CHARS)
    return text.where(_flag(text.str.len().gt(0)))


def _flag(mask: pd.Series) -> np.ndarray:
    """A nullable boolean Series as a plain bool array, missing counting as False."""
    return mask.to_numpy(dtype=bool, na_value=False)


def _iso_codes(country: pd.Series, values: pd.Series) -> pd.Series:
    if not country.index.equals(values.index):
        raise ValueError("country must have the same index as values")
    return country.astype("string").astype(_ARROW_TEXT).str.strip(_WHITESPACE_CHARS).str.upper()


def _national_to_e164(digits: pd.Series, iso: pd.Series) -> pd.Series:
    """'+<code><number>' for national numbers whose length fits the row's country, else NA."""
    trunk = _flag(digits.str.startswith("0"))
    significant = digits.str.slice(1).where(trunk, digits)
    significant_ok = ~_flag(significant.str.startswith("0"))
    significant_len = significant.str.len().to_numpy(dtype=float, na_value=np.nan)
    digits_len = digits.str.len().to_numpy(dtype=float, na_value=np.nan)
    e164 = pd.Series(pd.NA, index=digits.index, dtype=_ARROW_TEXT)
    for iso_code, calling_code in COUNTRY_CALLING_CODES.items():
        in_country = _flag(iso.eq(iso_code))
        if not in_country.any():
            continue
        lengths = NATIONAL_LENGTHS.get(iso_code, ())
        fits = in_country & significant_ok & np.isin(significant_len, lengths)
        # "1 212 555 0100" or "34 612 345 678": the calling code without '+', common for US numbers.
        with_code = (
            in_country
            & ~fits
            & ~trunk
            & _flag(digits.str.startswith(calling_code))
            & np.isin(digits_len - len(calling_code), lengths)
        )
        e164 = e164.mask(fits, "+" + calling_code + significant).mask(with_code, "+" + digits)
    return e164


def _fold(values: pd.Series) -> pd.Series:
    """NFKD accent-folded, lowercase text with whitespace collapsed to single spaces."""
    text = _clean_text(values, form="NFKD").str.replace(_COMBINING_MARKS, "", regex=True)
    undecomposable = _flag(text.str.contains(f"[{''.join(_UNDECOMPOSABLE)}]"))
    if undecomposable.any():
        table = str.maketrans(_UNDECOMPOSABLE)
        text[undecomposable] = text[undecomposable].astype("string").str.translate(table).to_numpy()
    return text.str.lower().str.replace(f"{_WHITESPACE}+", " ", regex=True)


def _without_punctuation(text: pd.Series) -> pd.Series:
    joined = text.str.replace(_JOINING_PUNCTUATION, "", regex=True)
    return joined.str.replace(f"(?:{_PUNCTUATION}| )+", " ", regex=True).str.strip(" ")


def _legal_form_suffix() -> tuple[str, dict[str, str]]:
    """A regex for a trailing legal form (group ``form``) in folded text, and the code per spelling key.

    A spelling's key is its folded letters ("S.L." and "s. l." are both "sl"); the regex accepts dots and
    spaces between any two letters of a key. Built per call so additions to LEGAL_FORM_SPELLINGS count.
    """
    spellings = [(code, spelling) for code, variants in LEGAL_FORM_SPELLINGS.items() for spelling in variants]
    folded = _fold(pd.Series([spelling for _, spelling in spellings], dtype="string"))
    keys = _without_punctuation(folded).str.replace(" ", "", regex=False)
    code_by_key: dict[str, str] = {}
    for (code, spelling), key in zip(spellings, keys, strict=True):
        if not key:
            raise ValueError(f"legal form spelling {spelling!r} of {code} has no letters")
        if code_by_key.setdefault(key, code) != code:
            raise ValueError(f"legal form spelling {spelling!r} is claimed by {code_by_key[key]} and {code}")
    alternatives = "|".join(
        "[. ]*".join(re.escape(char) for char in key) for key in sorted(code_by_key, key=len, reverse=True)
    )
    # A separate trailing token, so "Alsa" and "Plaza" do not end in "sa". The leftmost match wins, so of
    # two spellings that both end the name the longer one is taken.
    return f"(?: ?, ?| )(?P<form>{alternatives})[., ]*$", code_by_key

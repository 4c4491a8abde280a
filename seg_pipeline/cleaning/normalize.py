"""Matching keys for customer records: normalised email, E.164 phone, company stem + legal form, name.

The field's libraries do the knowledge-heavy parts: phonenumbers (Google's libphonenumber) parses and validates
phone numbers of every country, cleanco knows legal forms of ~80 countries, anyascii transliterates any script
to ASCII. This module only prepares text for them and vectorises over unique values.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

# Text is held as pyarrow strings so most regexes run natively on RE2; pandas still uses Python's re for a
# few calls. The engines disagree on \s, \w and \d, so the patterns spell character classes out instead.
_ARROW_TEXT = pd.ArrowDtype(pa.string())
# Unicode White_Space: NFKC keeps some of it, and RE2's \s is ASCII-only.
_WHITESPACE_CHARS = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE = f"[{_WHITESPACE_CHARS}]"
_EMAIL = f"[^@{_WHITESPACE_CHARS}]+@[^@.{_WHITESPACE_CHARS}]+(?:[.][^@.{_WHITESPACE_CHARS}]+)+"
# Dots and apostrophes join ("A.B.C." is "abc", "O'Neil" is "oneil"); any other non-alphanumeric separates.
_JOINING_PUNCTUATION = re.compile(r"['.\u2018\u2019`]")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
# "s. l." and "o. o.": letters written with a dot and a space, which cleanco reads as separate words.
_SPACED_INITIALS = re.compile(r"(?<![^\W\d_])([^\W\d_])\.\s+(?=[^\W\d_]\.)")
_BRACKETS = re.compile(r"[()\[\]{}]")


def normalize_email(values: pd.Series) -> pd.Series:
    """NFKC, trimmed, lowercased address; NA unless it has one '@', a local part and a dotted domain."""
    emails = _clean_text(values).str.lower()
    return emails.where(_flag(emails.str.fullmatch(_EMAIL))).astype("string")


def parse_phones(
    values: pd.Series, countries: pd.Series | None = None, default_region: str | None = None
) -> pd.DataFrame:
    """``phone_e164`` ("+34612345678") and ``phone_status`` (valid / invalid / missing) per value.

    National numbers are read in the row's country (ISO code), else in ``default_region``; a number that
    libphonenumber does not accept as valid for its country is flagged invalid and left out, never guessed.
    """
    text = _clean_text(values)
    regions = _regions(values.index, countries, default_region)
    present = text.notna().to_numpy()
    pairs = pd.DataFrame({"text": text[present].astype(object), "region": regions[present]})
    parsed = {key: _parse_phone(*key) for key in pairs.drop_duplicates().itertuples(index=False, name=None)}
    e164 = np.full(len(values), None, dtype=object)
    status = np.full(len(values), "missing", dtype=object)
    found = [parsed[key] for key in pairs.itertuples(index=False, name=None)]
    e164[present] = [number for number in found]
    status[present] = ["valid" if number else "invalid" for number in found]
    return pd.DataFrame(
        {"phone_e164": pd.array(e164, dtype="string"), "phone_status": pd.array(status, dtype="string")},
        index=values.index,
    )


def normalize_phone(
    values: pd.Series, country: pd.Series | None = None, default_region: str | None = None
) -> pd.Series:
    """E.164 ("+34612345678") or NA; see parse_phones."""
    return parse_phones(values, country, default_region)["phone_e164"]


def normalize_company(values: pd.Series, extra_legal_forms: Sequence[str] = ()) -> pd.DataFrame:
    """``company_stem`` (transliterated, lowercase, no punctuation, no legal form) and ``legal_form``.

    cleanco strips legal forms at the end or start of the name ("Nordic Foods Oy", "OOO Romashka"); the
    legal form is what was stripped, folded the same way ("sp z oo", "gmbh co kg"), NA when there is none.
    ``extra_legal_forms`` adds spellings cleanco does not know (a company's own list, long forms).
    """
    terms = _legal_form_terms(tuple(extra_legal_forms))
    text = _clean_text(values).astype(object)
    present = text.dropna()
    split = {value: _split_company(value, terms) for value in present.unique()}
    found = [split[v] for v in present]
    mask = text.notna().to_numpy()
    stem, form = np.full(len(values), None, dtype=object), np.full(len(values), None, dtype=object)
    stem[mask] = [s for s, _ in found]
    form[mask] = [f for _, f in found]
    return pd.DataFrame(
        {"company_stem": pd.array(stem, dtype="string"), "legal_form": pd.array(form, dtype="string")},
        index=values.index,
    )


def normalize_name(values: pd.Series) -> pd.Series:
    """Transliterated to ASCII, casefolded, punctuation removed, words single-spaced. For matching only."""
    text = _clean_text(values).astype(object)
    present = text.dropna()
    folded = {value: _fold_words(_given_name_first(value)) or None for value in present.unique()}
    out = np.full(len(values), None, dtype=object)
    out[text.notna().to_numpy()] = [folded[v] for v in present]
    return pd.Series(pd.array(out, dtype="string"), index=values.index)


def name_parts(names: pd.Series) -> pd.DataFrame:
    """``name_first`` (the first word) and ``name_last`` (the last word) of normalized names.

    A one-word name is taken as a surname. Middle names and initials are left to the comparators.
    """
    words = names.astype("string").str.split(" ")
    count = words.str.len()
    first = words.str[0].where(count.gt(1).fillna(False))
    last = words.str[-1]
    return pd.DataFrame({"name_first": first.astype("string"), "name_last": last.astype("string")})


def _given_name_first(name: str) -> str:
    """ "Smith, John" is written surname first: "John Smith"."""
    parts = name.split(",")
    if len(parts) == 2 and parts[0].strip() and parts[1].strip():
        return f"{parts[1].strip()} {parts[0].strip()}"
    return name


def _parse_phone(text: str, region: str | None) -> str | None:
    import phonenumbers  # imported with the step that parses, not with the code location

    # "+44 (0)20 ..." writes the trunk digit after the country code; it is not part of the number.
    candidate = text.replace("(0)", " ")
    stripped = candidate.lstrip()
    if stripped.startswith("00"):  # the international prefix of most countries, readable without a region
        candidate = "+" + stripped[2:]
    attempts = [candidate]
    digits = re.sub(r"[^0-9]", "", candidate)
    if region and not candidate.lstrip().startswith("+"):
        # "34 612 345 678": the country's own calling code written without '+', common in CRM exports
        code = str(phonenumbers.country_code_for_region(region))
        if digits.startswith(code) and code != "0":
            attempts.append("+" + digits)
    for attempt in attempts:
        try:
            number = phonenumbers.parse(attempt, region)
        except phonenumbers.NumberParseException:
            continue
        # for the row's own country the region-specific check is exact and ~2x faster (the +1 code alone
        # spans 25 regions that is_valid_number would try in turn)
        own = region is not None and number.country_code == phonenumbers.country_code_for_region(region)
        if (own and phonenumbers.is_valid_number_for_region(number, region)) or phonenumbers.is_valid_number(
            number
        ):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _regions(index: pd.Index, countries: pd.Series | None, default_region: str | None) -> np.ndarray:
    """The libphonenumber region per row: the row's country when it is one, else the default."""
    import phonenumbers

    default = default_region.upper() if default_region else None
    if countries is None:
        return np.full(len(index), default, dtype=object)
    if not countries.index.equals(index):
        raise ValueError("countries must have the same index as values")
    codes = countries.astype("string").str.strip().str.upper().replace({"UK": "GB"})
    known = codes.isin(phonenumbers.SUPPORTED_REGIONS).fillna(False).to_numpy(dtype=bool)
    return np.where(known, codes.astype(object).to_numpy(), default)


def _legal_form_terms(extra: tuple[str, ...]) -> dict[tuple[str, ...], None]:
    """cleanco's legal-form terms plus the extra spellings, normalized as cleanco normalizes its own, as a
    set of word tuples."""
    if extra not in _TERMS:
        from cleanco import prepare_default_terms
        from cleanco.clean import normalize_terms

        terms = {tuple(parts): None for _, parts in prepare_default_terms()}
        for parts in (t.split() for t in normalize_terms(_prepared_company(e) for e in extra)):
            if parts:
                terms[tuple(parts)] = None
        _TERMS[extra] = terms
    return _TERMS[extra]


_TERMS: dict[tuple[str, ...], dict[tuple[str, ...], None]] = {}
_LONGEST_TERM = 6  # words; cleanco's longest term has 4, the defaults' extras up to 5


def _split_company(name: str, terms: dict[tuple[str, ...], None]) -> tuple[str | None, str | None]:
    """Strip legal forms from the end, then the start, longest first, until none is left.

    cleanco's own basename scans all its ~330 terms per name in Python (~0.2 ms, minutes at a million
    companies); this looks the trailing and leading words up in a set of the same terms, normalized the
    same way (cleanco.clean.normalized, strip_punct), and also strips a second form ("Co., Ltd.").
    """
    from cleanco.clean import normalized, strip_punct, strip_tail

    text = _prepared_company(name)
    words = strip_tail(text).split()
    keys = [strip_punct(w) for w in normalized(" ".join(words)).split()]
    if len(keys) != len(words):  # normalization changed the word count: keep the name whole
        keys = words = []
    start, end = 0, len(words)
    for from_end in (True, False):
        found = True
        while found and end - start > 1:
            found = False
            for size in range(min(_LONGEST_TERM, end - start - 1), 0, -1):
                part = tuple(keys[end - size : end] if from_end else keys[start : start + size])
                if part in terms:
                    end, start = (end - size, start) if from_end else (end, start + size)
                    found = True
                    break
    full_words = _fold_words(text).split()
    if not full_words:
        return None, None
    stem_words = _fold_words(" ".join(words[start:end])).split() if words else full_words
    at = _find_words(full_words, stem_words)
    if at is None or not stem_words:
        return " ".join(full_words), None
    form = full_words[:at] + full_words[at + len(stem_words) :]
    return " ".join(stem_words), (" ".join(form) or None)


def _prepared_company(name: str) -> str:
    """Brackets to spaces ("AB (publ)"), a space after commas ("Acme,S.L."), spaced initials joined
    ("sp. z o. o." -> "sp. z o.o.")."""
    text = _BRACKETS.sub(" ", unicodedata.normalize("NFKC", name)).replace(",", ", ")
    previous = None
    while previous != text:
        previous, text = text, _SPACED_INITIALS.sub(r"\1.", text)
    return " ".join(text.split())


def _find_words(words: list[str], part: list[str]) -> int | None:
    for start in range(len(words) - len(part) + 1):
        if words[start : start + len(part)] == part:
            return start
    return None


def _fold_words(text: str) -> str:
    """ASCII (anyascii transliterates any script), casefolded, joined at dots and apostrophes."""
    from anyascii import anyascii

    ascii_text = anyascii(unicodedata.normalize("NFKC", text)).casefold()
    joined = _JOINING_PUNCTUATION.sub("", ascii_text)
    return " ".join(_SEPARATORS.split(joined)).strip()


def _clean_text(values: pd.Series) -> pd.Series:
    """NFKC-normalised, trimmed text as pyarrow strings; empty becomes NA."""
    # Normalising is per-value Python either way, and fastest on Python-backed strings.
    text = values.astype("string").str.normalize("NFKC").astype(_ARROW_TEXT).str.strip(_WHITESPACE_CHARS)
    return text.where(_flag(text.str.len().gt(0)))


def _flag(mask: pd.Series) -> np.ndarray:
    """A nullable boolean Series as a plain bool array, missing counting as False."""
    return mask.to_numpy(dtype=bool, na_value=False)

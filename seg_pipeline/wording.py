"""Numbers as a marketing manager reads them: money in the configured currency and locale (Babel's
CLDR patterns, so 88,536 EUR is "€88,536" in English and "88.536 €" in German), counts with thousands
separators, probability changes in percentage points.

Every text a person reads (the report, `explain`, driver texts, Dagster metadata summaries) formats
numbers here, so one setting (report.currency, report.locale) changes them everywhere.
"""

from __future__ import annotations

import math
from functools import lru_cache

MISSING = "—"


def _missing(value) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


@lru_cache(maxsize=32)
def _money_pattern(locale: str, digits: int) -> str:
    """The locale's standard currency pattern with ``digits`` decimals ("¤#,##0" for en, 0 digits)."""
    from babel import Locale

    pattern = Locale.parse(locale).currency_formats["standard"].pattern.split(";")[0]
    integer, _, rest = pattern.partition(".")
    if not rest:
        return pattern
    suffix = rest.lstrip("0#")  # the part after the decimals: " ¤" in de_DE
    return integer + ("." + "0" * digits if digits else "") + suffix


def money(value, currency: str = "EUR", locale: str = "en", digits: int = 0) -> str:
    """``value`` in ``currency`` with the locale's symbol, placement and separators; "—" when missing."""
    if _missing(value):
        return MISSING
    from babel.numbers import format_currency

    return format_currency(float(value), currency, format=_money_pattern(locale, digits), locale=locale,
                           currency_digits=False)  # fmt: skip


def count(value, locale: str = "en") -> str:
    """A whole number with the locale's thousands separator; "—" when missing."""
    if _missing(value):
        return MISSING
    from babel.numbers import format_decimal

    return format_decimal(int(round(float(value))), locale=locale)


def points(probability_change) -> str:
    """A change of a probability in percentage points: 0.214 -> "+21 points", -0.004 -> "-0.4 points"."""
    if _missing(probability_change):
        return MISSING
    pp = float(probability_change) * 100
    shown = f"{pp:+.0f}" if abs(round(pp, 1)) >= 1 else f"{pp:+.1f}"  # 0.96 is "+1", not "+1.0"
    return f"{shown} point" if shown in ("+1", "-1") else f"{shown} points"


@lru_cache(maxsize=32)
def _decimal_pattern(digits: int) -> str:
    return "#,##0" + ("." + "#" * digits if digits else "")


def number(value, locale: str = "en", digits: int = 1) -> str:
    """A number with up to ``digits`` decimals (trailing zeros dropped) and the locale's separators:
    2.5 -> "2.5" in English, "2,5" in German; "—" when missing."""
    if _missing(value):
        return MISSING
    return _number(round(float(value), digits), locale, digits)


@lru_cache(maxsize=65536)
def _number(value: float, locale: str, digits: int) -> str:
    from babel.numbers import format_decimal

    return format_decimal(value, format=_decimal_pattern(digits), locale=locale)


@lru_cache(maxsize=32)
def _percent_pattern(locale: str, digits: int) -> str:
    """The locale's percent pattern ("#,##0%" in en, "#,##0 %" in de) with up to ``digits`` decimals."""
    import re

    from babel import Locale

    pattern = Locale.parse(locale).percent_formats[None].pattern.split(";")[0]
    decimals = "." + "#" * digits if digits else ""
    return re.sub(r"[#0,.]*0", lambda number: number.group(0).split(".")[0] + decimals, pattern, count=1)


def percent(fraction, locale: str = "en", digits: int | None = None) -> str:
    """A share as a percentage with ``digits`` decimals; by default whole percent from 1 % up and one
    decimal below ("0.4%"), so small shares do not read as 0; "—" when missing."""
    if _missing(fraction):
        return MISSING
    value = float(fraction)
    if digits is None:
        digits = 0 if abs(value) >= 0.01 or value == 0 else 1
    return _percent(round(value, digits + 2), locale, digits)


@lru_cache(maxsize=65536)
def _percent(value: float, locale: str, digits: int) -> str:
    from babel.numbers import format_percent

    return format_percent(value, format=_percent_pattern(locale, digits), locale=locale)


def times(ratio, locale: str = "en") -> str:
    """A ratio as a multiple: 2.34 -> "2.3×", 12.4 -> "12×", 0.41 -> "0.4×"; "—" when missing."""
    if _missing(ratio):
        return MISSING
    return number(ratio, locale, 0 if abs(float(ratio)) >= 10 else 1) + "×"

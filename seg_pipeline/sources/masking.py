"""Cell values as people see them in errors, metadata, logs and alerts: their shape, never their text.

Any cell of an extract may hold personal data, also outside the PII columns (an email typed into a date
column, a phone number into an amount), and messages outlive the run (event log, alerts). So a value is
shown as a character-class mask: each letter becomes ``a`` (``A`` in upper case), each digit ``9``,
any white space a space; ASCII punctuation stays, since it shows the format (``99/99/9999``, ``99,99 AAA``);
anything else becomes ``?``. No letter or digit of the value survives. The mask is cut after
MAX_SHAPE characters and says the value's length, and names a shape that may be contact data
(email-like, phone-like): ``[aaaa.aaaaa@aaaaaaa.aa] (email-like, 22 chars)``.
"""

from __future__ import annotations

import re
import string

MAX_SHAPE = 24
_KEPT = frozenset(string.punctuation)
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_LIKE = re.compile(r"(?:\+|00|\()?[\d\s().\-/]+")
# digits with separators that read as a date (2024-06-30, 01/02/2024 10:00) are not a phone
_DATE_LIKE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?:[ T]\d{1,2}[:.]\d{2}(?:[:.]\d{2})?)?")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
MIN_PHONE_DIGITS = 7


def _char_class(char: str) -> str:
    if char.isdigit():
        return "9"
    if char.isalpha():
        return "A" if char.isupper() else "a"
    if char.isspace():
        return " "
    return char if char in _KEPT else "?"


def value_kind(text: str) -> str | None:
    """'email-like' or 'phone-like' when the text has that shape (possible contact data), else None."""
    text = text.strip()
    if _EMAIL_LIKE.fullmatch(text):
        return "email-like"
    digits = sum(c.isdigit() for c in text)
    # a bare number (an amount, an id: 1234567, 1234567.50) is not taken for a phone unless it starts like one
    grouped = not _PLAIN_NUMBER.fullmatch(text) or text.startswith(("+", "00"))
    if (
        _PHONE_LIKE.fullmatch(text)
        and digits >= MIN_PHONE_DIGITS
        and grouped
        and not _DATE_LIKE.fullmatch(text)
    ):
        return "phone-like"
    return None


def value_shape(value: object) -> str:
    """The value's mask for a message: ``[99/99/9999] (10 chars)``; see the module's docstring."""
    text = str(value)
    mask = "".join(_char_class(c) for c in text[:MAX_SHAPE])
    cut = "..." if len(text) > MAX_SHAPE else ""
    kind = value_kind(text)
    length = f"{len(text):,} char{'s' if len(text) != 1 else ''}"
    return f"[{mask}{cut}] ({kind + ', ' if kind else ''}{length})"


_NUMBER_LIKE = re.compile(r"[+-]?\d+(?:[.,]\d+)*")


def looks_like_data(name: str) -> bool:
    """A header name that reads as a value (contact data, a date, a number): a record in the header's place."""
    name = name.strip()
    return bool(value_kind(name) or _DATE_LIKE.fullmatch(name) or _NUMBER_LIKE.fullmatch(name))


def shown_name(name: str) -> str:
    """A header name as written, unless it reads as a value (``looks_like_data``): then its shape."""
    return value_shape(name) if looks_like_data(name) else name


def for_review(text: str) -> str:
    """``text`` as a review table (the quarantine) may hold it: as it is, unless it looks like contact data
    typed into the wrong column, which is shown by its shape only."""
    return value_shape(text) if value_kind(text) is not None else text

"""Cell values in messages: shown by their shape, never a letter or digit of them."""

from __future__ import annotations

import re

import pytest

from seg_pipeline.sources.masking import MAX_SHAPE, looks_like_data, shown_name, value_kind, value_shape

PERSONAL = [
    "anna.weber1987@example.de",
    "+49 170 1234567",
    "0049 (0)30 123 45 67",
    "Anna Weber",
    "Zoë Ñúñez-Ørsted",
    "Nuria Pérez 🎉",
    "٣٤٥٦٧٨٩٠",  # Arabic-Indic digits
    "x" * 500,
]


@pytest.mark.parametrize("value", PERSONAL)
def test_no_letter_or_digit_of_the_value_survives(value):
    shape = value_shape(value)
    mask = re.fullmatch(r"\[(.*)\] \((?:[a-z]+-like, )?[\d,]+ chars?\)", shape).group(1)
    assert set(mask) <= set("aA9 ?.") | set("!\"#$%&'()*+,-/:;<=>?@[\\]^_`{|}~")
    assert len(mask.removesuffix("...")) <= MAX_SHAPE
    # no run of the value's own letters or digits is in the message
    for token in re.findall(r"[^\W_]{2,}", value):
        assert token.casefold() not in shape.casefold() or set(token.casefold()) <= {"a"}, token


def test_the_shape_shows_the_format_and_the_length():
    assert value_shape("2024-06-30") == "[9999-99-99] (10 chars)"
    assert value_shape("12 EUR") == "[99 AAA] (6 chars)"
    assert value_shape("38,72") == "[99,99] (5 chars)"
    assert value_shape(1.5) == "[9.9] (3 chars)"
    assert value_shape("x") == "[a] (1 char)"
    assert value_shape("a\tb\nc") == "[a a a] (5 chars)"  # a line break never splits a message
    assert value_shape("y" * 30) == f"[{'a' * MAX_SHAPE}...] (30 chars)"


def test_contact_shapes_are_named():
    assert value_shape("anna.weber@example.de") == "[aaaa.aaaaa@aaaaaaa.aa] (email-like, 21 chars)"
    assert value_kind("+49 170 1234567") == "phone-like"
    assert value_kind("(030) 1234567") == "phone-like" and value_kind("651.818.668") == "phone-like"
    # dates, amounts and ids are not phones
    dates_amounts_ids = (
        "2024-06-30",
        "01/02/2024",
        "2024-06-30 10:00:00",
        "1717200000",
        "12.50",
        "1234567.5",
    )
    for value in (*dates_amounts_ids, "K0000001"):
        assert value_kind(value) is None, value


def test_header_names_that_read_as_values_are_shown_by_shape():
    assert shown_name("customer_id") == "customer_id" and shown_name("E-mail") == "E-mail"
    assert shown_name("anna@example.de") == "[aaaa@aaaaaaa.aa] (email-like, 15 chars)"
    assert (
        shown_name("2024-06-30") == "[9999-99-99] (10 chars)" and shown_name("12,50") == "[99,99] (5 chars)"
    )
    assert not looks_like_data("monthly_charges") and looks_like_data("+34 612 345 678")


def test_for_review_keeps_ordinary_values_and_shapes_contact_data():
    from seg_pipeline.sources.masking import for_review

    assert for_review("twelve") == "twelve" and for_review("2024-13-45") == "2024-13-45"
    assert for_review("anna.weber@example.com") == "[aaaa.aaaaa@aaaaaaa.aaa] (email-like, 22 chars)"
    assert "2345678" not in for_review("+49 171 2345678")

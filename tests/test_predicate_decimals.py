"""Money reaches the policy gate as decimal strings (pydantic writes a `Decimal` so): a predicate that
compares it with a number compares decimals; other mismatched types still never match."""

from __future__ import annotations

import pytest

from policies.predicates import evaluate_predicate


@pytest.mark.parametrize(
    ("source", "args", "holds"),
    [
        ("total > 10000", {"total": "12500.00"}, True),
        ("total > 10000", {"total": "10000.00"}, False),
        ("total >= 10000.0", {"total": "10000.00"}, True),
        ("total == 0.1", {"total": "0.10"}, True),  # as decimals: no float rounding
        ("10000 < total", {"total": "-12500.00"}, False),
        ("total > 5", {"total": "abc"}, False),  # not a number: no match, as before
        ("total > 5", {"total": "1e9"}, False),  # only plain decimal notation counts as money
        ("code == '5'", {"code": "5"}, True),  # strings compare as strings
        ("flag == 1", {"flag": True}, True),  # untouched: Python's own comparison
    ],
)
def test_decimal_strings_compare_with_numbers(source, args, holds):
    assert evaluate_predicate(source, args) is holds

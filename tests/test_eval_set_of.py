"""`set_of` in an evaluation set: a list of objects compared item by item, with precision and recall
over the items of all cases and each compared field's share of right values."""

from __future__ import annotations

import pytest

from aifactory.evalset import EvalSet
from aifactory.evaluate import CaseResult, EvalReport, score

SET = EvalSet.model_validate({
    "cases": [{
        "id": "two-pairs",
        "input": {},
        "expect": {"output": {
            "matched": {"set_of": [{"inv": "A-1", "tx": "T1"}, {"inv": "B-2", "tx": "T2"}], "keys": ["inv", "tx"], "metric": "match"},
            "invoices": {"set_of": [{"inv": "A-1", "total": 10.5, "iban": "X"}, {"inv": "B-2", "total": 3, "iban": None}], "keys": ["inv"], "compare": ["total", "iban"]},
        }},
    }],
})  # fmt: skip
CASE = SET.cases[0]


def test_a_list_with_exactly_the_expected_items_in_any_order_is_right():
    out = {"matched": [{"inv": "B-2", "tx": "T2", "score": 0.9}, {"inv": "A-1", "tx": "T1"}],
           "invoices": [{"inv": "B-2", "total": 3, "iban": None}, {"inv": "A-1", "total": 10.5, "iban": "X"}]}  # fmt: skip
    s = score(CASE, out, [])
    assert s.ok and s.sets["matched"] == {"found": 2, "got": 2, "expected": 2, "right": {}, "exact": True}


@pytest.mark.parametrize(
    ("matched", "found", "got"),
    [([{"inv": "A-1", "tx": "T1"}], 1, 1), ([{"inv": "A-1", "tx": "T1"}, {"inv": "B-2", "tx": "T9"}], 1, 2),
     ([{"inv": "A-1", "tx": "T1"}, {"inv": "A-1", "tx": "T1"}, {"inv": "B-2", "tx": "T2"}], 2, 3), ("not a list", 0, 0)],
)  # fmt: skip
def test_a_missing_a_wrong_or_a_repeated_item_makes_it_wrong(matched, found, got):
    s = score(CASE, {"matched": matched, "invoices": []}, [])
    assert not s.fields["matched"] and (s.sets["matched"]["found"], s.sets["matched"]["got"]) == (found, got)


def test_precision_recall_and_field_accuracy_are_summed_over_the_cases():
    right = score(CASE, {"matched": [{"inv": "A-1", "tx": "T1"}, {"inv": "B-2", "tx": "T2"}],
                         "invoices": [{"inv": "A-1", "total": 10.5, "iban": "X"}, {"inv": "B-2", "total": 3, "iban": None}]}, [])  # fmt: skip
    half = score(CASE, {"matched": [{"inv": "A-1", "tx": "T1"}, {"inv": "B-2", "tx": "T7"}],
                        "invoices": [{"inv": "A-1", "total": 10.0, "iban": "X"}]}, [])  # fmt: skip
    assert not half.fields["invoices"]  # a wrong total makes the list wrong, though its keys are right
    failed = score(CASE, None, [])
    report = EvalReport("a", "1", "m", "f", metrics=SET.metric_names(), set_metrics=SET.set_metrics())
    report.cases = [CaseResult(str(i), s.ok, s.fields, True, None, [], 0, 1.0, 1, 0.0, sets=s.sets) for i, s in enumerate((right, half, failed))]
    summary = report.summary()
    assert summary["match_precision"] == round(3 / 4, 4) and summary["match_recall"] == round(3 / 6, 4)
    assert summary["invoices_precision"] == 1.0 and summary["invoices_recall"] == 0.5
    assert summary["invoices_total_accuracy"] == round(2 / 6, 4) and summary["invoices_iban_accuracy"] == 0.5
    assert summary["match_accuracy"] == round(1 / 3, 4) and summary["invoices_accuracy"] == round(1 / 3, 4)

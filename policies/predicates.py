"""Predicates over tool arguments: `amount > 10000`, `country not in ['KP', 'IR']`.

Workflow-safe, pure. A small, closed expression language parsed with `ast`
and checked against a whitelist at load time, so a bundle can never run code:
names refer to argument fields (dots for nesting), literals are numbers,
strings, booleans, None and lists; operators are comparisons, `in`, `not in`,
`and`, `or`, `not`. A name missing from the arguments makes the predicate false.

Money crosses the Temporal boundary as a decimal string (`"12500.00"`: pydantic writes a `Decimal`
so, never as a float), so a comparison of a number with a string that is a decimal number compares
the two as decimals: `total > 10000` holds for `{"total": "12500.00"}`. Any other mismatched
types never match.
"""

from __future__ import annotations

import ast
import re
from decimal import Decimal
from typing import Any

_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")

_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class PredicateError(ValueError):
    """The expression is not in the predicate language; the message says what is not allowed."""


class _Missing(Exception):
    pass


def compile_predicate(source: str) -> ast.Expression:
    """Parse and check `source`; raises `PredicateError` naming the first thing not allowed."""
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise PredicateError(f"not a valid expression ({e.msg})") from None
    _check(tree.body)
    return tree


def _check(node: ast.AST) -> None:
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        _check(node.operand)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise PredicateError("only ==, !=, <, <=, >, >=, in and not in compare values")
        _check(node.left)
        for c in node.comparators:
            _check(c)
    elif isinstance(node, (ast.List, ast.Tuple)):
        for e in node.elts:
            _check(e)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise PredicateError(f"literal {node.value!r} is not allowed")
    elif isinstance(node, ast.Name):
        pass
    elif isinstance(node, ast.Attribute):
        _check(node.value)
    else:
        raise PredicateError(f"{type(node).__name__} is not allowed in a predicate")


def _eval(node: ast.AST, args: dict[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, args) for v in node.values)
        return any(_eval(v, args) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, args)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, args)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, args)
            try:
                if not _COMPARE[type(op)](*_as_decimals(left, right)):
                    return False
            except TypeError:  # "abc" > 5: a mismatched type never matches
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, args) for e in node.elts]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        if node.id not in args:
            raise _Missing(node.id)
        return args[node.id]
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, args)
        if not isinstance(base, dict) or node.attr not in base:
            raise _Missing(node.attr)
        return base[node.attr]
    raise PredicateError(f"{type(node).__name__} is not allowed")  # unreachable after _check


def _as_decimals(left: Any, right: Any) -> tuple[Any, Any]:
    """A number and a decimal string, as two decimals; anything else as it is."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def decimal_text(v: Any) -> bool:
        return isinstance(v, str) and bool(_DECIMAL.match(v))

    if (number(left) and decimal_text(right)) or (decimal_text(left) and number(right)):
        return Decimal(str(left)), Decimal(str(right))
    return left, right


def evaluate_predicate(source: str, args: dict[str, Any]) -> bool:
    """True when `source` holds for `args`; a field the arguments lack makes it false."""
    tree = compile_predicate(source)
    try:
        return bool(_eval(tree.body, args))
    except _Missing:
        return False

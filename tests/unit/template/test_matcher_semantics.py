"""The pattern matcher used by the routing test behaves as AWS EventBridge documents it.

Each case is a small pattern and event whose outcome the EventBridge user guide ("Event patterns",
"Content filtering") states. Where moto's matcher differs, a test shows the difference and
`AwsEventPattern` (test code only) corrects it.
"""

import json
from typing import Any, cast

import pytest
from moto.events.models import EventPattern

from tests.unit.template.aws_matcher import AwsEventPattern, pattern_matches


def matches(pattern: dict[str, Any], detail: dict[str, Any]) -> bool:
    return pattern_matches(
        {"detail": pattern}, {"source": "s", "detail-type": "t", "detail": detail}
    )


LOW = {"q": [{"numeric": ["<=", 10]}]}

CASES = [
    # numeric: only JSON numbers compare; the boundary is inclusive for <=
    ("numeric <= at the boundary", LOW, {"q": 10}, True),
    ("numeric <= below", LOW, {"q": -1}, True),
    ("numeric <= float", LOW, {"q": 9.5}, True),
    ("numeric <= above", LOW, {"q": 11}, False),
    ("numeric on a string", LOW, {"q": "5"}, False),
    ("numeric on null", LOW, {"q": None}, False),
    ("numeric on a missing field", LOW, {}, False),
    ("numeric on an object (Decimal128)", LOW, {"q": {"$numberDecimal": "5"}}, False),
    ("numeric range", {"q": [{"numeric": [">", 0, "<=", 5]}]}, {"q": 5}, True),
    ("numeric range, outside", {"q": [{"numeric": [">", 0, "<=", 5]}]}, {"q": 0}, False),
    # exists: on leaf fields; a field under a null parent does not exist
    ("exists true, present", {"q": [{"exists": True}]}, {"q": 0}, True),
    ("exists true, missing", {"q": [{"exists": True}]}, {}, False),
    ("exists false, missing", {"q": [{"exists": False}]}, {}, True),
    ("exists false, present", {"q": [{"exists": False}]}, {"q": 3}, False),
    ("exists false under a null parent", {"p": {"q": [{"exists": False}]}}, {"p": None}, True),
    ("exists false under a missing parent", {"p": {"q": [{"exists": False}]}}, {}, True),
    # several filters for one field: any of them
    (
        "filters are or-ed: numeric",
        {"q": [{"numeric": ["<=", 1]}, {"exists": False}]},
        {"q": 1},
        True,
    ),
    ("filters are or-ed: exists", {"q": [{"numeric": ["<=", 1]}, {"exists": False}]}, {}, True),
    (
        "filters are or-ed: neither",
        {"q": [{"numeric": ["<=", 1]}, {"exists": False}]},
        {"q": 2},
        False,
    ),
    # anything-but: any value except the listed ones; a missing field does not match
    ("anything-but, other value", {"c": [{"anything-but": ["audit_log"]}]}, {"c": "x"}, True),
    (
        "anything-but, listed value",
        {"c": [{"anything-but": ["audit_log"]}]},
        {"c": "audit_log"},
        False,
    ),
    ("anything-but, missing field", {"c": [{"anything-but": ["audit_log"]}]}, {}, False),
    # exact values: case-sensitive; an array in the event matches when any element does
    ("exact, case-sensitive", {"op": ["update"]}, {"op": "Update"}, False),
    (
        "array element matches",
        {"t": ["fullDocument"]},
        {"t": ["updateDescription", "fullDocument"]},
        True,
    ),
    ("array without the element", {"t": ["fullDocument"]}, {"t": ["updateDescription"]}, False),
    # $or: any branch, and-ed with the fields beside it
    ("$or first branch", {"$or": [{"a": [1]}, {"b": [2]}]}, {"a": 1}, True),
    ("$or second branch", {"$or": [{"a": [1]}, {"b": [2]}]}, {"b": 2}, True),
    ("$or no branch", {"$or": [{"a": [1]}, {"b": [2]}]}, {"a": 2, "b": 1}, False),
    (
        "$or and a sibling field",
        {"k": ["x"], "$or": [{"a": [1]}, {"b": [2]}]},
        {"k": "y", "a": 1},
        False,
    ),
    ("$or nested in an object", {"n": {"$or": [{"a": [1]}, {"b": [2]}]}}, {"n": {"b": 2}}, True),
]


@pytest.mark.parametrize(
    ("pattern", "detail", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_matcher_follows_eventbridge_semantics(pattern, detail, expected):
    assert matches(pattern, detail) is expected


def test_moto_treats_booleans_as_numbers_and_aws_does_not():
    # GIVEN a numeric filter and a boolean value (a JSON `true` is not a JSON number)
    pattern = json.dumps({"detail": {"q": [{"numeric": ["<=", 10]}]}})
    event: Any = {"detail": {"q": True}}

    # THEN moto's matcher says true <= 10 (Python's bool is an int) ...
    assert EventPattern.load(pattern).matches_event(event) is True
    # ... and the corrected matcher, like AWS, does not match
    assert AwsEventPattern.load(pattern).matches_event(event) is False
    assert AwsEventPattern.load(pattern).matches_event(cast(Any, {"detail": {"q": [True, 3]}}))

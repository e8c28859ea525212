"""moto's EventBridge pattern matcher, corrected where it differs from AWS (test code only).

The one difference found (`test_matcher_semantics.py` shows it): moto treats JSON `true`/`false`
as the numbers 1/0 in `numeric` filters, because Python's bool is an int. AWS matches numeric
filters only against JSON numbers, so `{"cantidad": true}` is not "<= 10" there.
"""

import json
from collections.abc import Mapping
from typing import Any, cast

from moto.events.models import EventPattern


def _is_json_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class AwsEventPattern(EventPattern):
    """EventPattern whose `numeric` filter ignores booleans, as AWS does."""

    @staticmethod
    def _does_item_match_named_filter(item: Any, pattern: dict[str, Any]) -> bool:
        if "numeric" in pattern:
            if isinstance(item, list):
                item = [value for value in item if _is_json_number(value)]
                if not item:
                    return False
            elif isinstance(item, bool):
                return False
        return EventPattern._does_item_match_named_filter(item, pattern)


def pattern_matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether EventBridge (as corrected above) matches `event` against `pattern`."""
    compiled = AwsEventPattern.load(json.dumps(pattern))
    return bool(compiled.matches_event(cast(Any, dict(event))))

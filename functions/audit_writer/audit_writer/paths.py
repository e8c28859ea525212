"""MongoDB field paths (`cliente.email`) over BSON documents: read one value, or mask values.

The redaction here follows MongoDB's path rules, which JSONPath (what Powertools data masking
speaks) does not: a path reaches into every element of an array of sub-documents, and an
update description names changed values by dotted keys (`{"cliente.email": ...}`) rather than
by nesting. Values are copied, never mutated, and keep their BSON types.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final

from aws_lambda_powertools.utilities.data_masking.constants import DATA_MASKING_STRING

# The same mask Powertools data masking writes, so masked values look alike across tools.
MASK: Final = DATA_MASKING_STRING


def split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def value_at(document: Any, parts: Sequence[str]) -> Any:
    """The value at a path of sub-document keys, or None when the path does not lead to one."""
    value = document
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def updated_value_at(updated_fields: Mapping[str, Any], parts: Sequence[str]) -> Any:
    """The value an update set at a path, whether named by that dotted key or by a parent's."""
    for key, value in updated_fields.items():
        key_parts = split(key)
        if tuple(parts[: len(key_parts)]) == key_parts:
            return value_at(value, parts[len(key_parts) :])
    return None


def redact(document: Mapping[str, Any], paths: Sequence[Sequence[str]]) -> dict[str, Any]:
    """A copy of `document` with the value at each path replaced by `MASK`."""
    result: dict[str, Any] = dict(document)
    for parts in paths:
        result = _mask(result, parts)
    return result


def redact_updated_fields(
    updated_fields: Mapping[str, Any], paths: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """A copy of an update description's `updatedFields` with redacted paths masked.

    A dotted key at or below a redacted path is masked whole; a key above one (a sub-document
    set at once) is masked inside. Array indexes in a key (`items.0.email`) match a redacted
    path without them (`items.email`), as MongoDB paths do.
    """
    result = dict(updated_fields)
    for key in updated_fields:
        key_parts = split(key)
        for parts in paths:
            rest = _remainder(key_parts, parts)
            if rest is None:
                continue
            result[key] = MASK if not rest else _mask(result[key], rest)
    return result


def _remainder(key_parts: Sequence[str], parts: Sequence[str]) -> tuple[str, ...] | None:
    """What is left of `parts` below `key_parts`: () when the key is at or below the path,
    None when the two do not meet."""
    i = j = 0
    while i < len(key_parts) and j < len(parts):
        if key_parts[i] == parts[j]:
            i += 1
            j += 1
        elif key_parts[i].isdigit():
            i += 1
        else:
            return None
    return tuple(parts[j:])


def _mask(value: Any, parts: Sequence[str]) -> Any:
    if isinstance(value, Mapping):
        head, rest = parts[0], parts[1:]
        if head not in value:
            return value
        masked = dict(value)
        masked[head] = MASK if not rest else _mask(value[head], rest)
        return masked
    if isinstance(value, list):
        head, rest = parts[0], parts[1:]
        if head.isdigit():
            index = int(head)
            if index >= len(value):
                return value
            items = list(value)
            items[index] = MASK if not rest else _mask(value[index], rest)
            return items
        # A path through an array reaches the field in every element, as in MongoDB queries.
        return [_mask(item, parts) for item in value]
    return value

"""A document as of one update: the pre-image with the event's update description applied.

An update's `fullDocument` (`updateLookup`) is the document when the relay read the event, which
may already show later changes; the update description is this change alone. Pure functions:
nothing here reads a server, and the document given is never modified.
"""

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from change_contract.errors import ContractError

if TYPE_CHECKING:
    from change_contract.models import UpdateDescription

_MISSING = object()
Part = str | int


def path_parts(path: str, description: "UpdateDescription") -> list[Part]:
    """The components of a path of `description`: its `disambiguatedPaths` entry when it has one
    (a field name holding a dot, or a numeric field name: ints there are array indexes), else the
    path split on dots (a numeric part then indexes an array, or names a field of a document)."""
    explicit = (description.disambiguated_paths or {}).get(path)
    if isinstance(explicit, list) and explicit:
        return [part if isinstance(part, int) else str(part) for part in explicit]
    return list(path.split("."))


def apply_update_description(
    document: Mapping[str, Any], description: "UpdateDescription"
) -> dict[str, Any]:
    """`document` (the pre-image) as the update described by `description` left it.

    Arrays are truncated first, then `updatedFields` are set (missing parents are created as
    embedded documents, an index past an array's end pads it with nulls, as `$set` does), then
    `removedFields` are unset (an array element unset becomes null, as `$unset` does). A path that
    crosses a value that is neither a document nor an array raises `ContractError`: the pre-image
    and the update description do not belong together.
    """
    result: dict[str, Any] = copy.deepcopy(dict(document))
    for array in description.truncated_arrays:
        parts = path_parts(array.field, description)
        value = _get(result, parts)
        if not isinstance(value, list):
            raise ContractError(
                f"cannot apply the update description: truncated array `{array.field}` "
                "is not an array in the document"
            )
        del value[array.new_size :]
    for path, value in description.updated_fields.items():
        _set(result, path_parts(path, description), copy.deepcopy(value), path)
    for path in description.removed_fields:
        _unset(result, path_parts(path, description))
    return result


def _index(part: Part) -> int | None:
    if isinstance(part, int):
        return part
    return int(part) if part.isdigit() else None


def _child(container: Any, part: Part) -> Any:
    if isinstance(container, Mapping):
        return container.get(str(part), _MISSING)
    index = _index(part)
    if isinstance(container, list) and index is not None and index < len(container):
        return container[index]
    return _MISSING


def _get(document: Mapping[str, Any], parts: Sequence[Part]) -> Any:
    current: Any = document
    for part in parts:
        current = _child(current, part)
        if current is _MISSING:
            return _MISSING
    return current


def _assign(container: Any, part: Part, value: Any, path: str) -> None:
    if isinstance(container, dict) and not isinstance(part, int):
        container[part] = value
        return
    index = _index(part)
    if isinstance(container, list) and index is not None:
        container.extend([None] * (index + 1 - len(container)))
        container[index] = value
        return
    if isinstance(container, dict):  # an int part (from disambiguatedPaths) on a document
        container[str(part)] = value
        return
    raise ContractError(
        f"cannot apply the update description: `{path}` crosses a "
        f"{type(container).__name__} value in the document"
    )


def _set(document: dict[str, Any], parts: Sequence[Part], value: Any, path: str) -> None:
    current: Any = document
    for part in parts[:-1]:
        child = _child(current, part)
        if child is _MISSING:
            child = {}
            _assign(current, part, child, path)
        current = child
    _assign(current, parts[-1], value, path)


def _unset(document: dict[str, Any], parts: Sequence[Part]) -> None:
    parent = _get(document, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent.pop(str(last), None)
        return
    index = _index(last)
    if isinstance(parent, list) and index is not None and index < len(parent):
        parent[index] = None

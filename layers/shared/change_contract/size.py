"""PutEvents entry sizes, counted exactly as EventBridge counts them.

EventBridge adds the UTF-8 bytes of Source, DetailType, Detail and each Resources entry, plus 14
bytes when Time is given; a request's size is the sum over its entries.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from change_contract.constants import DEFAULT_MAX_REQUEST_BYTES, TIME_FIELD_BYTES
from change_contract.errors import EntryTooLargeError


def entry_size(entry: Mapping[str, Any], *, detail_bytes: int | None = None) -> int:
    """Size of one PutEvents request entry in bytes.

    `detail_bytes`: the Detail's UTF-8 length when the caller already has it (the encoder renders
    the detail as UTF-8 bytes), so a non-ASCII Detail is not encoded a second time to count it.
    """
    size = TIME_FIELD_BYTES if entry.get("Time") is not None else 0
    for field in ("Source", "DetailType", "Detail"):
        value = entry.get(field)
        if value is None:
            continue
        if field == "Detail" and detail_bytes is not None:
            size += detail_bytes
        else:
            # `isascii` is O(1) in CPython; most fields skip the UTF-8 copy.
            size += len(value) if value.isascii() else len(value.encode("utf-8"))
    for resource in entry.get("Resources") or ():
        size += len(resource.encode("utf-8"))
    return size


def request_size(entries: Iterable[Mapping[str, Any]]) -> int:
    """Size of a PutEvents request: the sum of its entries."""
    return sum(entry_size(entry) for entry in entries)


def check_entry_size(
    entry: Mapping[str, Any], limit: int = DEFAULT_MAX_REQUEST_BYTES, *, event_id: str | None = None
) -> int:
    """Return the entry's size, or raise `EntryTooLargeError` when it alone exceeds `limit`."""
    size = entry_size(entry)
    if size > limit:
        raise EntryTooLargeError(size, limit, event_id=event_id)
    return size

"""What an update or replace changed, field by field, from the event alone.

Uses `updateDescription` for updates (dotted paths as MongoDB gives them) and, when the event
carries a pre-image, the old value of each field; for replaces, a diff of the two documents.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from change_contract import ChangeDetail

Kind = Literal["updated", "added", "removed", "truncated"]


class _Unknown:
    """The old value of a field when the event has no pre-image."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    kind: Kind
    old: Any = UNKNOWN
    new: Any = UNKNOWN
    new_size: int | None = None

    @property
    def top_level(self) -> str:
        return self.path.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class ChangeSummary:
    """The changes of one event; `omitted` when the event was too large to carry them."""

    changes: list[FieldChange] = field(default_factory=list)
    has_pre_image: bool = False
    omitted: bool = False

    @property
    def changed_fields(self) -> list[str]:
        """Top-level field names touched, in order, each once (for SNS filter policies)."""
        return list(dict.fromkeys(change.top_level for change in self.changes))

    @property
    def is_empty(self) -> bool:
        return not self.changes and not self.omitted


def value_at(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (array positions included), or UNKNOWN."""
    current: Any = document
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return UNKNOWN
    return current


def same_value(old: Any, new: Any) -> bool:
    """Equal and of the same type (an int replaced by the equal double is still a change)."""
    return type(old) is type(new) and bool(old == new)


def summarize_update(detail: ChangeDetail) -> ChangeSummary:
    description = detail.update_description
    if description is None:
        # The relay left the update description out because the event was too large.
        return ChangeSummary(omitted=True)
    before = detail.full_document_before_change
    changes: list[FieldChange] = []
    for path, new in description.updated_fields.items():
        old = value_at(before, path) if before is not None else UNKNOWN
        if before is not None and same_value(old, new):
            continue
        kind: Kind = "added" if before is not None and old is UNKNOWN else "updated"
        changes.append(FieldChange(path, kind, old=old, new=new))
    for path in description.removed_fields:
        old = value_at(before, path) if before is not None else UNKNOWN
        changes.append(FieldChange(path, "removed", old=old))
    for array in description.truncated_arrays:
        changes.append(FieldChange(array.field, "truncated", new_size=array.new_size))
    return ChangeSummary(changes, has_pre_image=before is not None)


def summarize_replace(detail: ChangeDetail) -> ChangeSummary:
    after = detail.full_document
    if after is None:
        return ChangeSummary(omitted=True)
    before = detail.full_document_before_change
    if before is None:
        # Without a pre-image every field of the new document is shown as set.
        changes = [FieldChange(name, "updated", new=value) for name, value in after.items()]
        return ChangeSummary([change for change in changes if change.path != "_id"])
    changes = []
    for name, new in after.items():
        if name == "_id":
            continue
        if name not in before:
            changes.append(FieldChange(name, "added", new=new))
        elif not same_value(before[name], new):
            changes.append(FieldChange(name, "updated", old=before[name], new=new))
    for name, old in before.items():
        if name not in after:
            changes.append(FieldChange(name, "removed", old=old))
    return ChangeSummary(changes, has_pre_image=True)

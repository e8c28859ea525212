"""Typed view of the EventBridge event a Lambda function receives, with BSON types restored.

The models validate; they never fetch or write anything. `decode.decode_event` is the way in.
"""

import datetime as dt
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from bson import Timestamp
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from change_contract import ejson
from change_contract.constants import DOCUMENT_OPERATIONS
from change_contract.errors import ContractError
from change_contract.post_image import apply_update_description

OperationType = Literal[
    "insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate"
]

# A document field: plain JSON in, BSON types (ObjectId, Decimal128, datetime...) out.
BsonDocument = Annotated[dict[str, Any], BeforeValidator(ejson.restore)]
BsonDate = Annotated[dt.datetime, BeforeValidator(ejson.restore)]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")


class ClusterTime(_Model):
    """The oplog time of a change: seconds and increment. Orders changes on one cluster."""

    t: int = Field(ge=0)
    i: int = Field(ge=0)

    def as_tuple(self) -> tuple[int, int]:
        return (self.t, self.i)

    def as_timestamp(self) -> Timestamp:
        return Timestamp(self.t, self.i)

    def __lt__(self, other: "ClusterTime") -> bool:
        return self.as_tuple() < other.as_tuple()

    def __le__(self, other: "ClusterTime") -> bool:
        return self.as_tuple() <= other.as_tuple()


class Namespace(_Model):
    db: str = Field(min_length=1)
    coll: str | None = None


class TruncatedArray(_Model):
    field: str
    new_size: int = Field(alias="newSize", ge=0)


class UpdateDescription(_Model):
    """What an update changed, as MongoDB describes it (dotted paths in `updated_fields`)."""

    updated_fields: BsonDocument = Field(alias="updatedFields")
    removed_fields: list[str] = Field(alias="removedFields")
    truncated_arrays: list[TruncatedArray] = Field(default_factory=list, alias="truncatedArrays")
    disambiguated_paths: dict[str, Any] | None = Field(default=None, alias="disambiguatedPaths")

    @property
    def changed_fields(self) -> list[str]:
        """Every top-level path the update touched, in a stable order."""
        paths = [*self.updated_fields, *self.removed_fields]
        paths += [array.field for array in self.truncated_arrays]
        return list(dict.fromkeys(paths))


class PayloadRefModel(_Model):
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)


class ChangeDetail(_Model):
    """`detail` of a change event, schema version 1. See schema/detail.schema.json."""

    schema_version: Literal[1] = Field(alias="schemaVersion")
    event_id: str = Field(alias="eventId", min_length=1)
    operation_type: OperationType = Field(alias="operationType")
    # "backfill": a read of an existing document (`python -m relay backfill`), not a change.
    origin: Literal["changeStream", "backfill"] = "changeStream"
    ns: Namespace | None = None
    to: Namespace | None = None
    document_key: BsonDocument | None = Field(default=None, alias="documentKey")
    update_description: UpdateDescription | None = Field(default=None, alias="updateDescription")
    full_document: BsonDocument | None = Field(default=None, alias="fullDocument")
    full_document_before_change: BsonDocument | None = Field(
        default=None, alias="fullDocumentBeforeChange"
    )
    cluster_time: ClusterTime = Field(alias="clusterTime")
    snapshot_time: ClusterTime | None = Field(default=None, alias="snapshotTime")
    wall_time: BsonDate | None = Field(default=None, alias="wallTime")
    txn_number: int | None = Field(default=None, alias="txnNumber")
    lsid: BsonDocument | None = None
    truncated: list[str] = Field(default_factory=list)
    payload_ref: PayloadRefModel | None = Field(default=None, alias="payloadRef")

    @model_validator(mode="after")
    def _document_operations_name_their_document(self) -> "ChangeDetail":
        if self.operation_type in DOCUMENT_OPERATIONS:
            if self.ns is None:
                raise ValueError(f"{self.operation_type} without `ns`")
            if self.document_key is None:
                raise ValueError(f"{self.operation_type} without `documentKey`")
        if self.origin == "backfill":
            if self.operation_type != "insert":
                raise ValueError("a backfill read must be an insert")
            if self.snapshot_time is None:
                raise ValueError("a backfill read without `snapshotTime`")
        shrunk = bool(self.truncated) or self.payload_ref is not None
        if self.operation_type == "update" and self.update_description is None and not shrunk:
            raise ValueError("update without `updateDescription`")
        return self

    @property
    def is_backfill(self) -> bool:
        """True for a read of an existing document published by a backfill, not a change."""
        return self.origin == "backfill"

    @property
    def document_id(self) -> Any:
        """The changed document's `_id`, or None for events about a collection or database."""
        return None if self.document_key is None else self.document_key.get("_id")

    @property
    def collection(self) -> str | None:
        return None if self.ns is None else self.ns.coll

    def document_after(self) -> dict[str, Any] | None:
        """The document exactly as this change left it, when the event shows it; else None.

        Insert and replace: `fullDocument`. Update: the pre-image with the update description
        applied (`fullDocument` of an update is read later, by `updateLookup`, and may already
        show newer changes). None for a delete, an update without pre-image, or content cut for
        size. Raises `ContractError` when the pre-image and the update description disagree.
        """
        if self.operation_type in ("insert", "replace"):
            return self.full_document
        if self.operation_type != "update":
            return None
        before, description = self.full_document_before_change, self.update_description
        if before is None or description is None:
            return None
        try:
            return apply_update_description(before, description)
        except ContractError as error:
            raise ContractError(error.reason, event_id=self.event_id) from error


class GapDetail(_Model):
    """`detail` of a gap event: history the relay could not read, published so no loss is silent."""

    schema_version: Literal[1] = Field(alias="schemaVersion")
    event_id: str = Field(alias="eventId", min_length=1)
    kind: Literal["gap"]
    scope: dict[str, Any]
    lost_after: ClusterTime | None = Field(alias="lostAfter")
    resumed_at: ClusterTime = Field(alias="resumedAt")
    reason: str


class ChangeEvent(EventBridgeModel):
    """The EventBridge envelope Lambda receives, with a typed change `detail`."""

    detail: ChangeDetail  # narrows the envelope's free-form detail

    @property
    def is_replay(self) -> bool:
        """True when EventBridge re-delivered this event from an archive replay."""
        return self.replay_name is not None

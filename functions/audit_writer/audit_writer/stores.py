"""Where audit records are kept: a MongoDB collection (default) or a DynamoDB table.

Both stores write each event at most once (a unique index on `eventId`, or a conditional put on
a key that contains it), so a re-delivered event is reported as already recorded rather than as
an error. Driver failures are logged once and raised as `AuditStoreError` for the platform to
retry; nothing here swallows one.
"""

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from bson import Timestamp
from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from audit_writer.log import logger
from audit_writer.record import AuditRecord
from audit_writer.settings import AuditSettings, StoreKind
from change_contract import ejson
from reaction_runtime.clients import RETRY_CONFIG
from reaction_runtime.errors import DownstreamError

EVENT_ID_INDEX: Final = "eventId_unique"
HISTORY_INDEX: Final = "documentKey_id_clusterTime"
# DynamoDB items are at most 400 KB; content beyond this budget is left out of the item (and
# named in `truncated`) so the who/what/when part of the record is always written.
DYNAMODB_CONTENT_BUDGET: Final = 350_000
# Content fields given up first when a DynamoDB item would be too large.
_SHED_ORDER: Final = ("fullDocumentBeforeChange", "fullDocument", "changes")
_SECRET_MAX_AGE_S: Final = 300
# MongoDB's code for refused credentials (AuthenticationFailed), as after a secret rotation.
AUTHENTICATION_FAILED: Final = 18
# Under the functions' 30 s timeout, so an unreachable server is an error with a reason rather
# than a timed-out invocation (pymongo waits 30 s by default).
SERVER_SELECTION_TIMEOUT_MS: Final = 10_000


class AuditStoreError(DownstreamError):
    """The audit store could not be reached or refused a write; the event must be retried."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a document's history."""

    when: dt.datetime
    actor: str
    operation_type: str
    changed_fields: tuple[str, ...]
    event_id: str


class AuditStore(Protocol):
    """Keeps audit records and reads one document's history back."""

    @property
    def own_namespace(self) -> tuple[str, str] | None:
        """The (database, collection) written to, when it is a MongoDB collection: the writer
        never audits it, which breaks the loop of auditing its own writes."""
        ...

    def record(self, record: AuditRecord) -> bool:
        """Write the record; False when the same event was already recorded."""
        ...

    def history(
        self, document_id: Any, *, namespace: tuple[str, str] | None = None
    ) -> list[HistoryEntry]:
        """The document's records, oldest first (by cluster time)."""
        ...

    def close(self) -> None:
        """Release the connections the store opened itself (the container is ending)."""
        ...


class MongoAuditStore:
    """Audit records in a MongoDB collection, BSON values as they are.

    With `reconnect`, a write refused for bad credentials (a rotated secret) makes the next
    write connect again through it, reading the URI afresh, instead of failing until the
    container is replaced.
    """

    def __init__(
        self,
        collection: Collection[dict[str, Any]],
        *,
        reconnect: Callable[[], Collection[dict[str, Any]]] | None = None,
    ) -> None:
        self._collection = collection
        self.own_namespace = (collection.database.name, collection.name)
        self._reconnect = reconnect
        self._indexed = False
        self._stale = False

    def record(self, record: AuditRecord) -> bool:
        self._replace_client_if_stale()
        self._ensure_indexes()
        try:
            self._collection.insert_one(record.as_document())
        except DuplicateKeyError as error:
            if self._already_recorded(record.event_id, error):
                return False
            logger.error("audit insert failed", event_id=record.event_id, error=str(error))
            raise AuditStoreError("audit insert hit an unexpected unique index") from error
        except PyMongoError as error:
            self._note_failure(error)
            logger.error(
                "audit insert failed", event_id=record.event_id, error_type=type(error).__name__
            )
            raise AuditStoreError(f"MongoDB audit insert failed: {error}") from error
        return True

    def close(self) -> None:
        # Its MongoClient's monitor threads would otherwise keep dialling a server that is gone.
        self._collection.database.client.close()

    def _note_failure(self, error: PyMongoError) -> None:
        refused = isinstance(error, OperationFailure) and error.code == AUTHENTICATION_FAILED
        if refused and self._reconnect is not None:
            self._stale = True

    def _replace_client_if_stale(self) -> None:
        if not self._stale or self._reconnect is None:
            return
        old = self._collection
        self._collection = self._reconnect()
        self._stale = False
        self._indexed = False
        old.database.client.close()
        logger.info("mongodb client replaced", reason="credentials refused")

    def history(
        self, document_id: Any, *, namespace: tuple[str, str] | None = None
    ) -> list[HistoryEntry]:
        query: dict[str, Any] = {"documentKey._id": document_id}
        if namespace is not None:
            query["ns"] = {"db": namespace[0], "coll": namespace[1]}
        projection = {"wallTime": 1, "clusterTime": 1, "actor": 1, "operationType": 1}
        projection |= {"changedFields": 1, "eventId": 1}
        try:
            cursor = self._collection.find(query, projection).sort(
                [("clusterTime", ASCENDING), ("eventId", ASCENDING)]
            )
            return [_entry(document) for document in cursor]
        except PyMongoError as error:
            logger.error("audit history read failed", error_type=type(error).__name__)
            raise AuditStoreError(f"MongoDB audit history read failed: {error}") from error

    def _already_recorded(self, event_id: str, error: DuplicateKeyError) -> bool:
        """Whether a duplicate-key error means this event's record exists. Another unique index
        an operator added must not make a new event look recorded (and be lost)."""
        key_pattern = (error.details or {}).get("keyPattern")
        if isinstance(key_pattern, Mapping):
            return "eventId" in key_pattern
        # Servers that do not say which index refused the write: look the record up.
        try:
            return self._collection.find_one({"eventId": event_id}, {"_id": 1}) is not None
        except PyMongoError as lookup_error:
            logger.error("audit duplicate check failed", error_type=type(lookup_error).__name__)
            raise AuditStoreError(f"cannot check the audit record: {lookup_error}") from error

    def _ensure_indexes(self) -> None:
        # Once per container: creating an index that exists with the same options is a no-op.
        if self._indexed:
            return
        try:
            self._collection.create_index("eventId", unique=True, name=EVENT_ID_INDEX)
            self._collection.create_index(
                [("documentKey._id", ASCENDING), ("clusterTime", ASCENDING)], name=HISTORY_INDEX
            )
        except PyMongoError as error:
            self._note_failure(error)
            logger.error("audit index creation failed", error_type=type(error).__name__)
            raise AuditStoreError(f"cannot create the audit indexes: {error}") from error
        self._indexed = True


class DynamoAuditStore:
    """Audit records in a DynamoDB table keyed by document key and cluster time + event id.

    Document content is stored as Relaxed Extended JSON strings: lossless for every BSON type,
    readable, and free of DynamoDB's map limits (no empty sets, depth 32, no float type).
    """

    own_namespace: None = None

    def __init__(self, table: str, client: Any) -> None:
        self._table = table
        self._client = client

    def close(self) -> None:
        """Nothing to release: the DynamoDB client is the runtime's, shared by the container."""

    def record(self, record: AuditRecord) -> bool:
        item = to_dynamo_item(record)
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(sortKey)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            logger.error(
                "audit put failed",
                event_id=record.event_id,
                error_code=error.response.get("Error", {}).get("Code"),
            )
            raise AuditStoreError(f"DynamoDB audit put failed: {error}") from error
        except BotoCoreError as error:
            logger.error(
                "audit put failed", event_id=record.event_id, error_type=type(error).__name__
            )
            raise AuditStoreError(f"DynamoDB audit put failed: {error}") from error
        return True

    def history(
        self, document_id: Any, *, namespace: tuple[str, str] | None = None
    ) -> list[HistoryEntry]:
        key = document_key_string({"_id": document_id})
        entries = []
        for item in self._query(key):
            if namespace is not None and item["ns"]["S"] != ".".join(namespace):
                continue
            entries.append(
                HistoryEntry(
                    when=_dynamo_when(item),
                    actor=item["actor"]["S"],
                    operation_type=item["operationType"]["S"],
                    changed_fields=tuple(json.loads(item["changedFields"]["S"])),
                    event_id=item["eventId"]["S"],
                )
            )
        return entries

    def _query(self, key: str) -> Iterator[dict[str, Any]]:
        try:
            pages = self._client.get_paginator("query").paginate(
                TableName=self._table,
                KeyConditionExpression="documentKey = :key",
                ExpressionAttributeValues={":key": {"S": key}},
                ScanIndexForward=True,
            )
            for page in pages:
                yield from page["Items"]
        except (ClientError, BotoCoreError) as error:
            logger.error("audit history read failed", error_type=type(error).__name__)
            raise AuditStoreError(f"DynamoDB audit history read failed: {error}") from error


def document_key_string(document_key: Mapping[str, Any]) -> str:
    """The DynamoDB partition key of a document: its key in compact Relaxed Extended JSON."""
    return json.dumps(ejson.to_plain(document_key), separators=(",", ":"), ensure_ascii=False)


def sort_key(record: AuditRecord) -> str:
    """Cluster time seconds and increment, zero-padded so they sort as text, then the event id."""
    return f"{record.cluster_time.t:010d}.{record.cluster_time.i:010d}#{record.event_id}"


def to_dynamo_item(record: AuditRecord) -> dict[str, dict[str, Any]]:
    """The DynamoDB item of a record (low-level attribute values)."""
    document = record.as_document()
    item: dict[str, dict[str, Any]] = {
        "documentKey": {"S": document_key_string(record.document_key)},
        "sortKey": {"S": sort_key(record)},
        "eventId": {"S": record.event_id},
        "operationType": {"S": record.operation_type},
        "ns": {"S": f"{record.db}.{record.coll}"},
        "actor": {"S": record.actor},
        "actorSource": {"S": record.actor_source.value},
        "changedFields": {"S": json.dumps(list(record.changed_fields), ensure_ascii=False)},
        "clusterTime": {
            "M": {"t": {"N": str(record.cluster_time.t)}, "i": {"N": str(record.cluster_time.i)}}
        },
        "recordedAt": {"S": _iso(record.recorded_at)},
        "origin": {"S": record.origin},
    }
    if record.wall_time is not None:
        item["wallTime"] = {"S": _iso(record.wall_time)}

    # Content as Extended JSON text, shed largest-risk first when the item would not fit.
    truncated = list(record.truncated)
    content = {
        name: ejson.to_json(document[name], fast=False)
        for name in ("changes", "fullDocument", "fullDocumentBeforeChange")
        if document[name] is not None
    }
    for name in _SHED_ORDER:
        if sum(len(text.encode("utf-8")) for text in content.values()) <= DYNAMODB_CONTENT_BUDGET:
            break
        if name in content:
            del content[name]
            truncated.append(name)
            logger.warning("audit content left out", event_id=record.event_id, field=name)
    for name, text in content.items():
        item[name] = {"S": text}
    if truncated:
        item["truncated"] = {"L": [{"S": name} for name in truncated]}
    return item


def _dynamo_when(item: Mapping[str, Any]) -> dt.datetime:
    if "wallTime" in item:
        return dt.datetime.fromisoformat(item["wallTime"]["S"])
    return dt.datetime.fromtimestamp(int(item["clusterTime"]["M"]["t"]["N"]), tz=dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _entry(document: Mapping[str, Any]) -> HistoryEntry:
    cluster_time: Timestamp = document["clusterTime"]
    when: dt.datetime = document.get("wallTime") or cluster_time.as_datetime()
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return HistoryEntry(
        when=when,
        actor=document["actor"],
        operation_type=document["operationType"],
        changed_fields=tuple(document.get("changedFields") or ()),
        event_id=document["eventId"],
    )


# --- building a store from settings, once per container -------------------------------------

MongoClientFactory = Callable[[str], MongoClient[dict[str, Any]]]


def mongo_client(uri: str) -> MongoClient[dict[str, Any]]:
    """The production client: UTC-aware dates, standard UUIDs (as the contract restores them)."""
    return MongoClient(
        uri,
        tz_aware=True,
        tzinfo=dt.UTC,
        uuidRepresentation="standard",
        appname="audit_writer",
        retryWrites=True,
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
    )


def mongodb_uri(settings: AuditSettings, *, refresh: bool = False) -> str:
    """The URI from `MONGODB_URI`, else from the Secrets Manager secret (cached by Parameters
    for a few minutes; `refresh` reads it again)."""
    if settings.mongodb_uri:
        return settings.mongodb_uri
    if not settings.mongodb_uri_secret_arn:
        raise AuditStoreError("neither MONGODB_URI nor MONGODB_URI_SECRET_ARN is set")
    from aws_lambda_powertools.utilities import parameters

    try:
        uri = parameters.get_secret(
            settings.mongodb_uri_secret_arn, max_age=_SECRET_MAX_AGE_S, force_fetch=refresh
        )
    except parameters.exceptions.GetParameterError as error:
        logger.error("mongodb uri secret unreadable", error_type=type(error).__name__)
        raise AuditStoreError(f"cannot read the MongoDB URI secret: {error}") from error
    return uri.strip()


def make_store(
    settings: AuditSettings,
    *,
    client_factory: MongoClientFactory = mongo_client,
    dynamodb_client: Any = None,
) -> AuditStore:
    """The store the settings choose. Call once per container and keep the result."""
    if settings.store is StoreKind.DYNAMODB:
        if settings.table is None:
            raise AuditStoreError("AUDIT_TABLE is not set")
        if dynamodb_client is None:
            import boto3

            dynamodb_client = boto3.client("dynamodb", config=RETRY_CONFIG)
        return DynamoAuditStore(settings.table, dynamodb_client)

    def connect(refresh: bool = False) -> Collection[dict[str, Any]]:
        uri = mongodb_uri(settings, refresh=refresh)
        try:
            client = client_factory(uri)
        except (PyMongoError, ValueError) as error:  # pymongo raises both for a malformed URI
            # Never the URI itself in a message: it holds the password.
            source = "MONGODB_URI" if settings.mongodb_uri else "the MONGODB_URI_SECRET_ARN secret"
            logger.error("mongodb uri unusable", source=source, error_type=type(error).__name__)
            raise AuditStoreError(
                f"the MongoDB URI in {source} is not usable ({type(error).__name__}); "
                "expected mongodb://... or mongodb+srv://..."
            ) from error
        return client[settings.database][settings.collection]

    return MongoAuditStore(connect(), reconnect=lambda: connect(refresh=True))

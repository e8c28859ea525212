"""The audit stores without a network: DynamoDB in moto's in-process mock, MongoDB in mongomock."""

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import mongomock
import pytest
from bson import ObjectId, Timestamp
from moto import mock_aws
from pymongo.errors import DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from audit_writer.record import AuditRecord, build_record
from audit_writer.settings import AuditSettings, RecordSettings
from audit_writer.stores import (
    DYNAMODB_CONTENT_BUDGET,
    EVENT_ID_INDEX,
    AuditStoreError,
    DynamoAuditStore,
    MongoAuditStore,
    document_key_string,
    make_store,
    mongodb_uri,
    to_dynamo_item,
)
from change_contract import decode_event, ejson
from reaction_runtime import DownstreamError

EVENTS = Path(__file__).resolve().parents[3] / "events"
AUDIT_TABLE = "audit-trail"
RECORDED_AT = dt.datetime(2026, 12, 3, 13, 0, tzinfo=dt.UTC)
PAN = ObjectId("6750a1f0c2b4a1e0f0a1b002")
# The samples about Pan de molde, in cluster-time order.
PAN_HISTORY = ["update-low-stock", "update-out-of-stock", "update-restock"]


def record_of(name: str, **changes: Any) -> AuditRecord:
    event = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    event["detail"] = {**event["detail"], **changes}
    return build_record(decode_event(event).detail, RecordSettings(), recorded_at=RECORDED_AT)


def create_audit_table(client: Any) -> None:
    client.create_table(
        TableName=AUDIT_TABLE,
        KeySchema=[
            {"AttributeName": "documentKey", "KeyType": "HASH"},
            {"AttributeName": "sortKey", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "documentKey", "AttributeType": "S"},
            {"AttributeName": "sortKey", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        create_audit_table(client)
        yield client


@pytest.fixture
def dynamo_store(dynamodb: Any) -> DynamoAuditStore:
    return DynamoAuditStore(AUDIT_TABLE, dynamodb)


@pytest.fixture
def mongo_store() -> MongoAuditStore:
    client: mongomock.MongoClient = mongomock.MongoClient(tz_aware=True)
    return MongoAuditStore(client["clase"]["audit_log"])


def items(client: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.scan(TableName=AUDIT_TABLE)["Items"]
    return found


# --- DynamoDB ----------------------------------------------------------------------------------


def test_dynamodb_item_layout(dynamo_store: DynamoAuditStore, dynamodb: Any) -> None:
    record = record_of("update-price-change")
    assert dynamo_store.record(record) is True

    (item,) = items(dynamodb)
    assert item["documentKey"] == {"S": '{"_id":{"$oid":"6750a1f0c2b4a1e0f0a1b001"}}'}
    assert item["sortKey"] == {"S": f"1796300020.0000000001#{record.event_id}"}
    assert item["eventId"] == {"S": record.event_id}
    assert item["operationType"] == {"S": "update"}
    assert item["ns"] == {"S": "clase.productos"}
    assert item["actor"] == {"S": "marta"}
    assert item["actorSource"] == {"S": "updateDescription"}
    assert json.loads(item["changedFields"]["S"]) == ["precio", "updatedBy"]
    assert item["clusterTime"] == {"M": {"t": {"N": "1796300020"}, "i": {"N": "1"}}}
    assert item["wallTime"] == {"S": "2026-12-03T12:13:40.123Z"}
    assert item["recordedAt"] == {"S": "2026-12-03T13:00:00.000Z"}
    # content is Extended JSON text that restores every BSON type
    assert ejson.from_json(item["fullDocument"]["S"]) == record.full_document
    assert ejson.from_json(item["fullDocumentBeforeChange"]["S"]) == (
        record.full_document_before_change
    )
    changes = ejson.from_json(item["changes"]["S"])
    assert changes == record.as_document()["changes"]
    assert "truncated" not in item


def test_dynamodb_writes_an_event_once(dynamo_store: DynamoAuditStore, dynamodb: Any) -> None:
    record = record_of("update-low-stock")
    assert dynamo_store.record(record) is True
    assert dynamo_store.record(record) is False
    assert len(items(dynamodb)) == 1


def test_dynamodb_history_is_in_cluster_time_order_whatever_the_arrival(
    dynamo_store: DynamoAuditStore,
) -> None:
    # GIVEN the three Pan changes arriving newest first
    for name in reversed(PAN_HISTORY):
        dynamo_store.record(record_of(name))
    # WHEN the history is read
    history = dynamo_store.history(PAN)
    # THEN it is oldest first
    expected = [record_of(name).event_id for name in PAN_HISTORY]
    assert [entry.event_id for entry in history] == expected
    assert [entry.actor for entry in history] == ["caja-03"] * 3
    assert history[0].when == dt.datetime(2026, 12, 3, 12, 13, 30, 123000, tzinfo=dt.UTC)
    assert history[0].changed_fields == ("cantidad", "updatedBy")


def test_dynamodb_history_filters_by_namespace(dynamo_store: DynamoAuditStore) -> None:
    dynamo_store.record(record_of("update-low-stock"))
    other = {"db": "clase", "coll": "archivo"}
    dynamo_store.record(record_of("update-restock", ns=other, eventId="other-collection"))
    assert len(dynamo_store.history(PAN)) == 2
    assert len(dynamo_store.history(PAN, namespace=("clase", "productos"))) == 1
    assert len(dynamo_store.history(PAN, namespace=("clase", "archivo"))) == 1
    assert dynamo_store.history(ObjectId()) == []


def test_dynamodb_sort_key_orders_increments_past_nine(dynamo_store: DynamoAuditStore) -> None:
    # Zero padding: increment 10 sorts after increment 9 as text.
    for increment in (10, 9):
        dynamo_store.record(
            record_of(
                "update-low-stock",
                eventId=f"ev-{increment}",
                clusterTime={"t": 1796300010, "i": increment},
            )
        )
    assert [entry.event_id for entry in dynamo_store.history(PAN)] == ["ev-9", "ev-10"]


def test_dynamodb_leaves_out_content_that_would_not_fit(
    dynamo_store: DynamoAuditStore, dynamodb: Any
) -> None:
    # GIVEN a document larger than a DynamoDB item may be, with a small update description
    big = {"_id": {"$oid": str(PAN)}, "notas": "x" * (DYNAMODB_CONTENT_BUDGET // 2 + 10)}
    record = record_of("update-low-stock", fullDocument=big, fullDocumentBeforeChange=big)
    # WHEN it is written
    assert dynamo_store.record(record) is True
    # THEN the pre-image went first, the post-image fit, and the item says what is missing
    (item,) = items(dynamodb)
    assert "fullDocumentBeforeChange" not in item
    assert "fullDocument" in item
    assert item["truncated"] == {"L": [{"S": "fullDocumentBeforeChange"}]}
    assert item["actor"] == {"S": "caja-03"}


def test_dynamodb_failure_raises_for_retry(dynamodb: Any) -> None:
    store = DynamoAuditStore("no-such-table", dynamodb)
    with pytest.raises(AuditStoreError, match="DynamoDB audit put failed") as caught:
        store.record(record_of("insert"))
    assert isinstance(caught.value, DownstreamError)


def test_document_key_string_is_stable_and_typed() -> None:
    assert document_key_string({"_id": PAN}) == '{"_id":{"$oid":"6750a1f0c2b4a1e0f0a1b002"}}'
    assert document_key_string({"_id": "sku-ñ"}) == '{"_id":"sku-ñ"}'
    assert document_key_string({"_id": 7}) != document_key_string({"_id": "7"})


def test_oversized_item_keeps_the_relays_truncation_list() -> None:
    record = record_of("update-low-stock", truncated=["fullDocumentBeforeChange"])
    assert to_dynamo_item(record)["truncated"] == {"L": [{"S": "fullDocumentBeforeChange"}]}


# --- MongoDB (mongomock) ------------------------------------------------------------------------


def test_mongodb_record_keeps_bson_types(mongo_store: MongoAuditStore) -> None:
    record = record_of("update-price-change")
    assert mongo_store.record(record) is True

    collection = mongo_store._collection
    stored = collection.find_one({"eventId": record.event_id}, {"_id": 0})
    assert stored == record.as_document()
    assert isinstance(stored["documentKey"]["_id"], ObjectId)
    assert isinstance(stored["clusterTime"], Timestamp)
    assert isinstance(stored["wallTime"], dt.datetime)


def test_mongodb_writes_an_event_once_and_creates_the_unique_index(
    mongo_store: MongoAuditStore,
) -> None:
    record = record_of("update-low-stock")
    assert mongo_store.record(record) is True
    assert mongo_store.record(record) is False
    collection = mongo_store._collection
    assert collection.count_documents({}) == 1
    assert collection.index_information()[EVENT_ID_INDEX]["unique"] is True


def test_mongodb_concurrent_writers_record_once(mongo_store: MongoAuditStore) -> None:
    record = record_of("update-low-stock")
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        barrier.wait()
        results.append(mongo_store.record(record))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert mongo_store._collection.count_documents({}) == 1


def test_mongodb_own_namespace_is_the_audit_collection(mongo_store: MongoAuditStore) -> None:
    assert mongo_store.own_namespace == ("clase", "audit_log")


def test_mongodb_failure_raises_for_retry(
    mongo_store: MongoAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ServerSelectionTimeoutError("no primary")

    monkeypatch.setattr(mongo_store._collection, "insert_one", unreachable)
    with pytest.raises(AuditStoreError, match="MongoDB audit insert failed") as caught:
        mongo_store.record(record_of("insert"))
    assert isinstance(caught.value, DownstreamError)
    assert isinstance(caught.value.__cause__, ServerSelectionTimeoutError)


def test_mongodb_another_unique_index_is_not_taken_for_a_duplicate(
    mongo_store: MongoAuditStore,
) -> None:
    # GIVEN an operator's unique index on the document key: a second change to the same document
    collection = mongo_store._collection
    collection.create_index("documentKey._id", unique=True)
    assert mongo_store.record(record_of("update-low-stock")) is True
    # WHEN another event about the same document is written, THEN it fails loudly
    with pytest.raises(AuditStoreError, match="unexpected unique index"):
        mongo_store.record(record_of("update-out-of-stock"))


def test_mongomock_cannot_sort_bson_timestamps() -> None:
    """mongomock 4.3 differs from MongoDB: it refuses to sort on a BSON Timestamp, which the
    MongoDB store's history sorts on. Its history is therefore tested against SecantusDB (or
    MONGODB_URI) in tests/integration/functions/test_audit_mongodb.py, not here."""
    collection = mongomock.MongoClient()["db"]["c"]
    collection.insert_many([{"t": Timestamp(2, 1)}, {"t": Timestamp(1, 1)}])
    with pytest.raises(NotImplementedError, match="does not know how to sort"):
        list(collection.find().sort("t", 1))


def test_mongomock_duplicate_key_errors_do_not_name_the_index() -> None:
    """mongomock 4.3 differs from MongoDB: its DuplicateKeyError carries no `keyPattern` (mongod
    and SecantusDB do: see test_the_unique_index_exists_and_refuses_a_second_record in the
    integration tier). The store then looks the event's record up instead, which
    test_mongodb_writes_an_event_once_and_creates_the_unique_index exercises."""
    collection = mongomock.MongoClient()["db"]["c"]
    collection.create_index("eventId", unique=True)
    collection.insert_one({"eventId": "a"})
    with pytest.raises(DuplicateKeyError) as caught:
        collection.insert_one({"eventId": "a"})
    assert "keyPattern" not in (caught.value.details or {})


# --- building a store ---------------------------------------------------------------------------


def test_make_store_reads_the_uri_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="audit/mongodb-uri", SecretString="mongodb://audit:pw@db.example:27017/\n"
        )["ARN"]
        settings = AuditSettings.from_env({"MONGODB_URI_SECRET_ARN": arn})
        seen: list[str] = []

        def factory(uri: str) -> Any:
            seen.append(uri)
            return mongomock.MongoClient()

        store = make_store(settings, client_factory=factory)
    assert seen == ["mongodb://audit:pw@db.example:27017/"]
    assert store.own_namespace == ("clase", "audit_log")


def test_an_unreadable_secret_is_a_store_error() -> None:
    with mock_aws():
        arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"
        settings = AuditSettings.from_env({"MONGODB_URI_SECRET_ARN": arn})
        with pytest.raises(AuditStoreError, match="cannot read the MongoDB URI secret"):
            mongodb_uri(settings)


def test_make_store_prefers_the_plain_uri_and_names_the_collection() -> None:
    settings = AuditSettings.from_env(
        {"MONGODB_URI": "mongodb://local", "AUDIT_DATABASE": "t", "AUDIT_COLLECTION": "h"}
    )
    store = make_store(settings, client_factory=lambda uri: mongomock.MongoClient())
    assert store.own_namespace == ("t", "h")


def test_make_store_builds_the_dynamodb_store(dynamodb: Any) -> None:
    settings = AuditSettings.from_env({"AUDIT_STORE": "dynamodb", "AUDIT_TABLE": AUDIT_TABLE})
    store = make_store(settings, dynamodb_client=dynamodb)
    assert store.own_namespace is None
    assert store.record(record_of("insert")) is True


def test_an_unusable_uri_is_a_store_error_that_does_not_echo_it() -> None:
    # The template's placeholder secret value, never replaced: pymongo refuses it without I/O.
    placeholder = "replace-me: put the MongoDB URI here (password s3cr3t)"
    settings = AuditSettings.from_env({"MONGODB_URI": placeholder})
    with pytest.raises(AuditStoreError, match="MONGODB_URI is not usable") as caught:
        make_store(settings)
    assert "s3cr3t" not in str(caught.value)


def test_refused_credentials_make_the_next_write_read_the_secret_again() -> None:
    with mock_aws():
        # GIVEN a store connected with the secret's first URI
        secrets = boto3.client("secretsmanager")
        arn = secrets.create_secret(Name="audit/uri", SecretString="mongodb://old@db/")["ARN"]
        seen: list[str] = []
        clients: list[Any] = []

        def factory(uri: str) -> Any:
            seen.append(uri)
            clients.append(mongomock.MongoClient())
            return clients[-1]

        store = make_store(
            AuditSettings.from_env({"MONGODB_URI_SECRET_ARN": arn}), client_factory=factory
        )
        first = clients[0]["clase"]["audit_log"]

        def refused(*args: Any, **kwargs: Any) -> None:
            raise OperationFailure("Authentication failed.", code=18)

        first.insert_one = refused
        # WHEN the password is rotated and the server refuses the old one
        secrets.put_secret_value(SecretId=arn, SecretString="mongodb://new@db/")
        with pytest.raises(AuditStoreError, match="Authentication failed"):
            store.record(record_of("insert"))
        # THEN the retry reads the secret afresh (not from the cache) and writes
        assert store.record(record_of("insert")) is True
    assert seen == ["mongodb://old@db/", "mongodb://new@db/"]
    assert clients[1]["clase"]["audit_log"].count_documents({}) == 1


def test_other_failures_keep_the_client(mongo_store: MongoAuditStore) -> None:
    calls: list[Any] = []

    def reconnect() -> Any:
        calls.append(1)
        return mongo_store._collection

    store = MongoAuditStore(mongo_store._collection, reconnect=reconnect)
    collection = store._collection
    real_insert = collection.insert_one

    def once(*args: Any, **kwargs: Any) -> Any:
        collection.insert_one = real_insert
        raise OperationFailure("not primary", code=10107)

    collection.insert_one = once
    with pytest.raises(AuditStoreError):
        store.record(record_of("insert"))
    assert store.record(record_of("insert")) is True
    assert calls == []

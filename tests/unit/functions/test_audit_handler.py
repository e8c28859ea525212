"""The audit writer's Lambda handler, in-process: every sample event, idempotency, ordering,
malformed input, the loop guard and the history command, on moto (DynamoDB) and mongomock."""

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import mongomock
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import AutoReconnect

from audit_writer import history
from audit_writer.stores import DownstreamError, MongoAuditStore
from change_contract import OPERATION_TYPES, ContractError
from localdev.samples import MALFORMED as SAMPLE_MALFORMED
from localdev.samples import SAMPLES
from tests.unit.functions.conftest import IDEMPOTENCY_TABLE, emitted_metrics, read_event
from tests.unit.functions.test_audit_stores import create_audit_table

# Every file of events/ that is an event (events/env.json holds `sam local` settings).
ALL_SAMPLES = sorted(SAMPLES)
AUDIT_TABLE = "audit-trail"
LECHE = ObjectId("6750a1f0c2b4a1e0f0a1b001")
PAN = ObjectId("6750a1f0c2b4a1e0f0a1b002")
NOT_AUDITED = {"drop", "invalidate"}
MALFORMED = set(SAMPLE_MALFORMED)
# sample -> actor expected in its record
ACTORS = {
    "insert": "ana@example.com",
    "insert-low-stock": "luis@example.com",
    "update-low-stock": "caja-03",
    "update-low-stock-replayed": "caja-03",
    "update-low-stock-no-pre-image": "caja-03",
    "update-out-of-stock": "caja-03",
    "update-restock": "caja-03",
    "update-price-change": "marta",
    "update-field-removed": "unknown",
    "update-in-transaction": "caja-03",
    "replace": "luis",
    "delete": "unknown",
    "delete-with-pre-image": "unknown",
}
BACKFILL_SAMPLE = "backfill-low-stock"
# The backfill sample is generated with the relay's backfill command: expected whenever it exists.
if BACKFILL_SAMPLE in SAMPLES:
    ACTORS[BACKFILL_SAMPLE] = "backfill"


@pytest.fixture
def dynamo_app(
    aws: None, monkeypatch: pytest.MonkeyPatch, load_app: Callable[[str], ModuleType]
) -> ModuleType:
    """A cold-started audit writer on the DynamoDB store (moto in-process)."""
    monkeypatch.setenv("AUDIT_STORE", "dynamodb")
    monkeypatch.setenv("AUDIT_TABLE", AUDIT_TABLE)
    create_audit_table(boto3.client("dynamodb"))
    return load_app("audit_writer")


@pytest.fixture
def mongo_app(
    aws: None, monkeypatch: pytest.MonkeyPatch, load_app: Callable[[str], ModuleType]
) -> Iterator[ModuleType]:
    """A cold-started audit writer on the MongoDB store, played by mongomock."""
    monkeypatch.setenv("AUDIT_STORE", "mongodb")
    monkeypatch.setenv("MONGODB_URI", "mongodb://mongomock.invalid/")
    monkeypatch.setenv("AUDIT_FULL_DOCUMENT", "redact")
    monkeypatch.setenv("AUDIT_REDACT_FIELDS", "precio")
    app: Any = load_app("audit_writer")
    client: mongomock.MongoClient = mongomock.MongoClient(tz_aware=True)
    # The container's store, handed in before first use (the handler builds one otherwise).
    app._store = MongoAuditStore(client["clase"]["audit_log"])
    yield app
    client.close()


def audit_items() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = boto3.client("dynamodb").scan(TableName=AUDIT_TABLE)["Items"]
    return found


def audit_documents(app: ModuleType) -> list[dict[str, Any]]:
    return list(app._store._collection.find({}, {"_id": 0}))


@pytest.mark.parametrize("name", ALL_SAMPLES)
def test_each_sample_on_dynamodb(
    name: str, dynamo_app: ModuleType, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    event = read_event(name)

    if name in MALFORMED:
        with pytest.raises(ContractError, match="eventId"):
            dynamo_app.handler(event, lambda_context)
        assert audit_items() == []
        assert emitted_metrics(capsys.readouterr().out)["InvalidEvents"] == 1
        return

    result = dynamo_app.handler(event, lambda_context)

    event_id = event["detail"]["eventId"]
    if name in NOT_AUDITED:
        assert result == {"outcome": "skipped-not-a-document-change", "eventId": event_id}
        assert audit_items() == []
        assert emitted_metrics(capsys.readouterr().out)["ChangesNotAudited"] == 1
        return
    assert result == {"outcome": "recorded", "eventId": event_id}
    (item,) = audit_items()
    assert item["eventId"] == {"S": event_id}
    assert item["actor"] == {"S": ACTORS[name]}
    operation = "baseline" if name == BACKFILL_SAMPLE else event["detail"]["operationType"]
    assert item["operationType"] == {"S": operation}
    document_id = event["detail"]["documentKey"]["_id"]["$oid"]
    assert item["documentKey"] == {
        "S": json.dumps({"_id": {"$oid": document_id}}, separators=(",", ":"))
    }
    assert emitted_metrics(capsys.readouterr().out)["AuditRecordsWritten"] == 1


def test_every_sample_on_mongodb_with_redaction(mongo_app: ModuleType, lambda_context: Any) -> None:
    # GIVEN every sample delivered once, in file order
    for name in ALL_SAMPLES:
        if name in MALFORMED:
            with pytest.raises(ContractError):
                mongo_app.handler(read_event(name), lambda_context)
            continue
        mongo_app.handler(read_event(name), lambda_context)

    # THEN one record per distinct document change (the replay repeats update-low-stock's id)
    documents = {document["eventId"]: document for document in audit_documents(mongo_app)}
    expected_ids = {read_event(name)["detail"]["eventId"] for name in ACTORS}
    assert set(documents) == expected_ids
    assert len(expected_ids) == len(ACTORS) - 1
    for name, actor in ACTORS.items():
        assert documents[read_event(name)["detail"]["eventId"]]["actor"] == actor
    # and the redacted field is masked in the post-image and in the update description
    price = documents[read_event("update-price-change")["detail"]["eventId"]]
    assert price["fullDocument"]["precio"] == "*****"
    assert price["changes"]["updatedFields"][0] == {"field": "precio", "value": "*****"}
    assert price["fullDocumentBeforeChange"]["precio"] != "*****"  # AUDIT_BEFORE_CHANGE=keep


def test_the_same_event_twice_writes_once(
    dynamo_app: ModuleType, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    event = read_event("update-low-stock")
    first = dynamo_app.handler(event, lambda_context)
    second = dynamo_app.handler(event, lambda_context)
    # the archive replay of the same change carries the same eventId
    third = dynamo_app.handler(read_event("update-low-stock-replayed"), lambda_context)

    assert (
        first == second == third == {"outcome": "recorded", "eventId": event["detail"]["eventId"]}
    )
    assert len(audit_items()) == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["AuditRecordsWritten"] == 1
    assert metrics["DuplicateEvents"] == 2


def test_the_same_event_concurrently_writes_once(
    dynamo_app: ModuleType, lambda_context: Any
) -> None:
    # GIVEN four deliveries of one event racing each other
    event = read_event("update-out-of-stock")
    barrier = threading.Barrier(4)
    outcomes: list[Any] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(dynamo_app.handler(event, lambda_context))
        except IdempotencyAlreadyInProgressError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN one record; every delivery either saw the outcome or was told to retry later
    assert len(audit_items()) == 1
    assert len(outcomes) == 4
    recorded = {"outcome": "recorded", "eventId": event["detail"]["eventId"]}
    assert any(outcome == recorded for outcome in outcomes)
    for outcome in outcomes:
        assert outcome == recorded or isinstance(outcome, IdempotencyAlreadyInProgressError)


def test_out_of_order_events_give_an_ordered_history(
    dynamo_app: ModuleType, lambda_context: Any
) -> None:
    # GIVEN Pan's changes delivered newest first
    for name in ["update-restock", "update-out-of-stock", "update-low-stock"]:
        dynamo_app.handler(read_event(name), lambda_context)
    # WHEN the history command prints Pan's history
    out, err = io.StringIO(), io.StringIO()
    code = history.main(["--id", str(PAN)], store=dynamo_app.store(), out=out, err=err)
    # THEN it is oldest first
    assert code == history.EXIT_OK
    assert out.getvalue() == (
        "WHEN                      WHO      OPERATION  FIELDS CHANGED\n"
        "2026-12-03T12:13:30.123Z  caja-03  update     cantidad, updatedBy\n"
        "2026-12-03T12:13:32.123Z  caja-03  update     cantidad, updatedBy\n"
        "2026-12-03T12:13:33.123Z  caja-03  update     cantidad, updatedBy\n"
    )


def test_history_command_reads_the_store_from_the_environment(
    dynamo_app: ModuleType, lambda_context: Any
) -> None:
    for name in ["update-in-transaction", "insert", "update-price-change", "delete-with-pre-image"]:
        dynamo_app.handler(read_event(name), lambda_context)
    environ = {"AUDIT_TABLE": AUDIT_TABLE, "MONGODB_URI": "mongodb://not-used"}
    out = io.StringIO()

    code = history.main(
        ["--id", '{"$oid": "6750a1f0c2b4a1e0f0a1b001"}', "--store", "dynamodb"],
        environ=environ,
        out=out,
    )

    assert code == history.EXIT_OK
    assert out.getvalue() == (
        "WHEN                      WHO              OPERATION  FIELDS CHANGED\n"
        "2026-12-03T12:13:21.123Z  ana@example.com  insert     (new document)\n"
        "2026-12-03T12:13:40.123Z  marta            update     precio, updatedBy\n"
        "2026-12-03T12:14:10.123Z  caja-03          update     cantidad, updatedBy\n"
    )


def test_history_command_without_records_or_settings(dynamo_app: ModuleType) -> None:
    err = io.StringIO()
    code = history.main(["--id", str(LECHE)], store=dynamo_app.store(), err=err)
    assert code == history.EXIT_NO_RECORDS
    assert err.getvalue() == 'no audit records for _id {"$oid": "6750a1f0c2b4a1e0f0a1b001"}\n'

    err = io.StringIO()
    code = history.main(["--id", "x", "--store", "dynamodb"], environ={}, err=err)
    assert code == history.EXIT_ERROR
    assert "AUDIT_TABLE" in err.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6750a1f0c2b4a1e0f0a1b001", LECHE),
        ('{"$oid": "6750a1f0c2b4a1e0f0a1b001"}', LECHE),
        ("42", 42),
        ('"42"', "42"),
        ("sku-1", "sku-1"),
        ('{"sku": 1, "tienda": "A"}', {"sku": 1, "tienda": "A"}),
    ],
)
def test_history_id_parsing(text: str, expected: Any) -> None:
    assert history.parse_document_id(text) == expected


def test_the_audit_collection_is_never_audited(
    mongo_app: ModuleType, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a change to the audit collection itself (a whole database is watched)
    event = read_event("insert")
    event["detail"]["ns"] = {"db": "clase", "coll": "audit_log"}
    # WHEN it is delivered
    result = mongo_app.handler(event, lambda_context)
    # THEN nothing is written, so the write cannot cause another change event
    assert result["outcome"] == "skipped-audit-collection"
    assert audit_documents(mongo_app) == []
    assert emitted_metrics(capsys.readouterr().out)["ChangesNotAudited"] == 1
    # while the same collection name in another database is audited
    event["detail"]["ns"] = {"db": "otra", "coll": "audit_log"}
    event["detail"]["eventId"] += "-otra"
    assert mongo_app.handler(event, lambda_context)["outcome"] == "recorded"


def test_a_store_failure_is_raised_and_the_retry_records(
    mongo_app: ModuleType,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN MongoDB failing the first insert
    collection = mongo_app._store._collection
    real_insert = collection.insert_one
    calls = []

    def flaky(document: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise AutoReconnect("connection reset")
        return real_insert(document, *args, **kwargs)

    monkeypatch.setattr(collection, "insert_one", flaky)
    event = read_event("replace")
    # WHEN delivered, it raises for the platform to retry
    with pytest.raises(DownstreamError, match="connection reset"):
        mongo_app.handler(event, lambda_context)
    assert emitted_metrics(capsys.readouterr().out)["DownstreamErrors"] == 1
    # THEN the retry is not taken for a duplicate, and records
    assert mongo_app.handler(event, lambda_context)["outcome"] == "recorded"
    assert len(audit_documents(mongo_app)) == 1


def test_bad_settings_stop_the_cold_start(
    aws: None, monkeypatch: pytest.MonkeyPatch, load_app: Callable[[str], ModuleType]
) -> None:
    monkeypatch.setenv("AUDIT_STORE", "dynamodb")
    monkeypatch.delenv("AUDIT_TABLE", raising=False)
    with pytest.raises(ValueError, match="AUDIT_TABLE"):
        load_app("audit_writer")


# --- malformed input ---------------------------------------------------------------------------

# Fields a valid detail must have, and values each can never take.
_WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "schemaVersion": st.one_of(st.integers().filter(lambda n: n != 1), st.text(), st.none()),
    "eventId": st.one_of(st.just(""), st.integers(), st.none(), st.lists(st.text(), max_size=2)),
    "operationType": st.text(max_size=12).filter(lambda text: text not in OPERATION_TYPES),
    "clusterTime": st.one_of(
        st.text(),
        st.fixed_dictionaries({"t": st.integers(max_value=-1), "i": st.integers(0, 9)}),
        st.fixed_dictionaries({"t": st.integers(0, 2**32)}),
    ),
    "ns": st.one_of(st.text(), st.fixed_dictionaries({"coll": st.text()}), st.just({"db": ""})),
    "documentKey": st.one_of(st.text(), st.integers(), st.lists(st.integers(), max_size=2)),
    "wallTime": st.sampled_from(["yesterday", "", "not a date", "2026-13-45"]),
}
_REQUIRED = ["schemaVersion", "eventId", "operationType", "clusterTime", "ns", "documentKey"]


@st.composite
def malformed_details(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid sample's detail with one field removed or given an impossible value, plus the
    field's name (the error must name it)."""
    base = read_event(draw(st.sampled_from(["insert", "update-low-stock", "delete"])))["detail"]
    field = draw(st.sampled_from(sorted(_WRONG_VALUES)))
    detail = dict(base)
    if field in _REQUIRED and draw(st.booleans()):
        del detail[field]
    else:
        detail[field] = draw(_WRONG_VALUES[field])
    return detail, field


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=malformed_details())
def test_malformed_details_are_refused_and_write_nothing(
    mongo_app: ModuleType, lambda_context: Any, case: tuple[dict[str, Any], str]
) -> None:
    detail, field = case
    event = {**read_event("insert"), "detail": detail}

    with pytest.raises(ContractError) as caught:
        mongo_app.handler(event, lambda_context)

    assert str(caught.value).startswith("change event")
    assert field in str(caught.value) or (
        field == "documentKey" and "documentKey" in str(caught.value)
    )
    assert audit_documents(mongo_app) == []


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(detail=st.one_of(st.none(), st.text(), st.integers(), st.lists(st.integers(), max_size=3)))
def test_a_detail_that_is_not_an_object_is_refused(
    mongo_app: ModuleType, lambda_context: Any, detail: Any
) -> None:
    event = {**read_event("insert"), "detail": detail}
    with pytest.raises(ContractError, match="detail"):
        mongo_app.handler(event, lambda_context)
    assert audit_documents(mongo_app) == []


def test_the_store_still_writes_once_after_the_idempotency_record_expired(
    dynamo_app: ModuleType, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an event recorded, and its idempotency record gone (expired after 48 h)
    event = read_event("update-price-change")
    assert dynamo_app.handler(event, lambda_context)["outcome"] == "recorded"
    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]:
        dynamodb.delete_item(TableName=IDEMPOTENCY_TABLE, Key={"id": item["id"]})
    # WHEN the event arrives again
    result = dynamo_app.handler(event, lambda_context)
    # THEN the store's own key refuses a second record
    assert result["outcome"] == "already-recorded"
    assert len(audit_items()) == 1
    assert emitted_metrics(capsys.readouterr().out)["AuditRecordsAlreadyWritten"] == 1


def test_logs_never_hold_document_bodies(
    mongo_app: ModuleType, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # GIVEN events whose documents hold names, prices and an actor's e-mail
    for name in ["insert", "update-price-change", "delete-with-pre-image", "drop"]:
        mongo_app.handler(read_event(name), lambda_context)
    mongo_app.handler(read_event("insert"), lambda_context)  # a duplicate, logged too
    # THEN the log records name the event and outcome, never document content
    messages = {record.getMessage() for record in caplog.records}
    assert messages >= {"audit record written", "change not audited", "duplicate event skipped"}
    logged = repr([record.__dict__ for record in caplog.records])
    # (text markers only: numbers could occur in the records' timings)
    for value in ["Leche entera", "Café molido", "nombreProducto", "precio", "ana@example.com"]:
        assert value not in logged


def test_shutdown_closes_the_mongodb_store_once(
    mongo_app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the container's MongoDB store, its client's close recorded
    client = mongo_app._store._collection.database.client
    closed: list[bool] = []
    monkeypatch.setattr(client, "close", lambda: closed.append(True))

    # WHEN the container ends, twice
    mongo_app.shutdown()
    mongo_app.shutdown()

    # THEN the client was closed once and the store let go
    assert closed == [True]
    assert mongo_app._store is None


def test_after_shutdown_the_next_event_builds_a_new_store(
    dynamo_app: ModuleType, lambda_context: Any
) -> None:
    # GIVEN a container whose DynamoDB store was built, then shut down
    first = dynamo_app.store()
    dynamo_app.shutdown()

    # WHEN an event arrives
    result = dynamo_app.handler(read_event("insert"), lambda_context)

    # THEN a new store recorded it, through the runtime's DynamoDB client, still open
    assert result["outcome"] == "recorded"
    assert dynamo_app._store is not first
    assert len(audit_items()) == 1

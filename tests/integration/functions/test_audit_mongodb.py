"""The audit writer on a real MongoDB (SecantusDB, or MONGODB_URI): stored records with their
BSON types, writing once under repeats and races, ordering, malformed input, redaction, the
loop guard on a whole-database watch, and the history command as users run it."""

import datetime as dt
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from bson import Decimal128, ObjectId, Timestamp
from hypothesis import HealthCheck, given, settings
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from audit_writer import history
from audit_writer.record import build_record
from audit_writer.settings import DocumentPolicy, RecordSettings
from audit_writer.stores import EVENT_ID_INDEX, MongoAuditStore, mongo_client
from audit_writer.writer import Outcome, audit_change
from change_contract import ContractError, decode_event, encode_change
from localdev.samples import MALFORMED, SAMPLES, lambda_event
from tests.conftest import MongoTarget
from tests.unit.functions.conftest import (
    IDEMPOTENCY_TABLE,
    FakeLambdaContext,
    create_idempotency_table,
    read_event,
)
from tests.unit.functions.test_audit_handler import ACTORS, malformed_details

ROOT = Path(__file__).resolve().parents[3]
DOCUMENT_SAMPLES = sorted(ACTORS)
PAN = ObjectId("6750a1f0c2b4a1e0f0a1b002")
LECHE = ObjectId("6750a1f0c2b4a1e0f0a1b001")
RECORDED_AT = dt.datetime(2026, 12, 3, 13, 0, tzinfo=dt.UTC)
_unique = itertools.count()


def fixed_clock() -> dt.datetime:
    return RECORDED_AT


@pytest.fixture(scope="module")
def audit_client(mongo: MongoTarget) -> Iterator[MongoClient[dict[str, Any]]]:
    """The production client (UTC-aware dates, standard UUIDs) on the test deployment."""
    client = mongo_client(mongo.uri)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def audit_log(
    fresh_db: Database[dict[str, Any]], audit_client: MongoClient[dict[str, Any]]
) -> Collection[dict[str, Any]]:
    return audit_client[fresh_db.name]["audit_log"]


@pytest.fixture
def store(audit_log: Collection[dict[str, Any]]) -> MongoAuditStore:
    return MongoAuditStore(audit_log)


def audit(name: str, store: MongoAuditStore, **settings: Any) -> Outcome:
    event = decode_event(read_event(name))
    return audit_change(event, settings=RecordSettings(**settings), store=store, clock=fixed_clock)


def stored(collection: Collection[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(collection.find({}, {"_id": 0}))


# --- records, as the logic writes them -----------------------------------------------------------


def test_each_sample_is_stored_with_its_bson_types(
    store: MongoAuditStore, audit_log: Collection[dict[str, Any]]
) -> None:
    # GIVEN every sample about one document, audited once each
    for name in DOCUMENT_SAMPLES:
        audit(name, store)

    # THEN each distinct event has exactly the record built from it, read back with its types
    records = {document["eventId"]: document for document in stored(audit_log)}
    for name in DOCUMENT_SAMPLES:
        event = decode_event(read_event(name))
        expected = build_record(event.detail, RecordSettings(), recorded_at=RECORDED_AT)
        assert records[event.detail.event_id] == expected.as_document(), name
        assert records[event.detail.event_id]["actor"] == ACTORS[name]
    # the replay repeats update-low-stock's eventId: one record for the two
    assert len(records) == len(DOCUMENT_SAMPLES) - 1
    price = records[read_event("update-price-change")["detail"]["eventId"]]
    assert isinstance(price["documentKey"]["_id"], ObjectId)
    assert price["fullDocument"]["precio"] == Decimal128("1.25")
    assert price["changes"]["updatedFields"][0] == {"field": "precio", "value": Decimal128("1.25")}
    assert isinstance(price["clusterTime"], Timestamp)
    assert price["wallTime"] == dt.datetime(2026, 12, 3, 12, 13, 40, 123000, tzinfo=dt.UTC)


def test_the_unique_index_exists_and_refuses_a_second_record(
    store: MongoAuditStore, audit_log: Collection[dict[str, Any]]
) -> None:
    audit("insert", store)
    index = audit_log.index_information()[EVENT_ID_INDEX]
    assert index["unique"] is True
    assert index["key"] == [("eventId", 1)]
    with pytest.raises(DuplicateKeyError) as caught:
        audit_log.insert_one({"eventId": read_event("insert")["detail"]["eventId"]})
    # The store tells its own index from others by keyPattern, which this server reports.
    assert caught.value.details is not None
    assert caught.value.details.get("keyPattern") == {"eventId": 1}


def test_the_same_event_twice_is_recorded_once(
    store: MongoAuditStore, audit_log: Collection[dict[str, Any]]
) -> None:
    assert audit("update-low-stock", store) is Outcome.RECORDED
    assert audit("update-low-stock", store) is Outcome.ALREADY_RECORDED
    assert audit("update-low-stock-replayed", store) is Outcome.ALREADY_RECORDED
    assert audit_log.count_documents({}) == 1


def test_the_same_event_concurrently_is_recorded_once(
    audit_client: MongoClient[dict[str, Any]],
    fresh_db: Database[dict[str, Any]],
    audit_log: Collection[dict[str, Any]],
) -> None:
    # GIVEN six writers (separate containers: separate stores) racing with one event
    writers = 6
    barrier = threading.Barrier(writers)
    outcomes: list[Outcome] = []

    def deliver() -> None:
        own_store = MongoAuditStore(audit_client[fresh_db.name]["audit_log"])
        barrier.wait()
        outcomes.append(audit("update-out-of-stock", own_store))

    threads = [threading.Thread(target=deliver) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN exactly one wrote, the others saw it already recorded
    assert len(outcomes) == writers
    assert sorted(outcomes) == sorted([Outcome.RECORDED] + [Outcome.ALREADY_RECORDED] * 5)
    assert audit_log.count_documents({}) == 1


def test_out_of_order_events_read_back_in_cluster_time_order(store: MongoAuditStore) -> None:
    # GIVEN Pan's changes arriving newest first
    for name in ["update-restock", "update-out-of-stock", "update-low-stock"]:
        audit(name, store)
    # THEN the history is oldest first, and the table says so
    entries = store.history(PAN)
    assert [entry.when.second for entry in entries] == [30, 32, 33]
    assert history.format_table(entries) == (
        "WHEN                      WHO      OPERATION  FIELDS CHANGED\n"
        "2026-12-03T12:13:30.123Z  caja-03  update     cantidad, updatedBy\n"
        "2026-12-03T12:13:32.123Z  caja-03  update     cantidad, updatedBy\n"
        "2026-12-03T12:13:33.123Z  caja-03  update     cantidad, updatedBy\n"
    )
    assert store.history(PAN, namespace=("clase", "otra")) == []


def test_redaction_is_what_reaches_the_database(
    store: MongoAuditStore, audit_log: Collection[dict[str, Any]]
) -> None:
    audit(
        "update-price-change",
        store,
        full_document=DocumentPolicy.REDACT,
        before_change=DocumentPolicy.DROP,
        redact_fields=("precio",),
    )
    (record,) = stored(audit_log)
    assert record["fullDocument"]["precio"] == "*****"
    assert record["fullDocument"]["nombreProducto"] == "Leche entera"
    assert record["fullDocumentBeforeChange"] is None
    assert record["changes"]["updatedFields"][0] == {"field": "precio", "value": "*****"}
    # nothing anywhere in the stored record still holds the price
    text = json.dumps(record, default=str)
    assert "1.25" not in text
    assert "1.15" not in text


# --- the handler, as Lambda runs it ------------------------------------------------------------


def load_app() -> ModuleType:
    """Import the handler by path under a fresh name: a cold start with the current environment."""
    name = f"_audit_app_{next(_unique)}"
    path = ROOT / "functions" / "audit_writer" / "app.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(
    aws_endpoint: str,
    mongo: MongoTarget,
    fresh_db: Database[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """The audit writer cold-started against the test MongoDB and moto_server (idempotency)."""
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("AUDIT_STORE", "mongodb")
    monkeypatch.setenv("MONGODB_URI", mongo.uri)
    monkeypatch.setenv("AUDIT_DATABASE", fresh_db.name)
    monkeypatch.setenv("AUDIT_FULL_DOCUMENT", "redact")
    monkeypatch.setenv("AUDIT_REDACT_FIELDS", "precio")
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    create_idempotency_table()
    module: Any = load_app()
    try:
        yield module
    finally:
        if module._store is not None:
            module._store._collection.database.client.close()


def test_handler_writes_every_sample_once(app: Any, fresh_db: Database[dict[str, Any]]) -> None:
    context = FakeLambdaContext()
    # GIVEN every sample delivered twice, the second round as platform retries would
    for _round in range(2):
        for name in sorted(SAMPLES):
            try:
                app.handler(read_event(name), context)
            except ContractError:
                assert name in MALFORMED

    # THEN one record per distinct document change, written through the production client
    records = stored(fresh_db["audit_log"])
    assert sorted(record["eventId"] for record in records) == sorted(
        {read_event(name)["detail"]["eventId"] for name in DOCUMENT_SAMPLES}
    )
    price = next(record for record in records if record["actor"] == "marta")
    assert price["fullDocument"]["precio"] == "*****"
    assert price["fullDocumentBeforeChange"]["precio"] == Decimal128("1.15")


def test_handler_under_concurrent_deliveries_writes_once(
    app: Any, fresh_db: Database[dict[str, Any]]
) -> None:
    event = read_event("replace")
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def deliver() -> None:
        barrier.wait()
        try:
            results.append(app.handler(event, FakeLambdaContext()))
        except IdempotencyAlreadyInProgressError as error:
            results.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert fresh_db["audit_log"].count_documents({}) == 1
    recorded = {"outcome": "recorded", "eventId": event["detail"]["eventId"]}
    assert recorded in results
    for result in results:
        assert result == recorded or isinstance(result, IdempotencyAlreadyInProgressError)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=malformed_details())
def test_handler_refuses_malformed_details_and_writes_nothing(
    app: Any, fresh_db: Database[dict[str, Any]], case: tuple[dict[str, Any], str]
) -> None:
    detail, field = case
    with pytest.raises(ContractError) as caught:
        app.handler({**read_event("insert"), "detail": detail}, FakeLambdaContext())
    assert field in str(caught.value)
    assert fresh_db["audit_log"].count_documents({}) == 0


def test_loop_guard_on_a_whole_database_watch(
    app: Any, mongo_client: MongoClient[dict[str, Any]], fresh_db: Database[dict[str, Any]]
) -> None:
    context = FakeLambdaContext()
    database = mongo_client[fresh_db.name]
    with database.watch(max_await_time_ms=500) as stream:
        # GIVEN a product written in the watched database
        database["productos"].insert_one(
            {"nombreProducto": "Sal", "cantidad": 3, "createdBy": "eva"}
        )

        # WHEN its change is audited, the audit insert is itself a change in the same database
        product_change = stream.next()
        result = app.handler(relay(product_change), context)
        assert result["outcome"] == "recorded"
        audit_change_event = stream.next()
        assert audit_change_event["ns"]["coll"] == "audit_log"

        # THEN that change is not audited, so no further write and no further change follows
        result = app.handler(relay(audit_change_event), context)
        assert result["outcome"] == "skipped-audit-collection"
        assert stream.try_next() is None
    records = stored(database["audit_log"])
    assert [record["actor"] for record in records] == ["eva"]


def relay(change: Any) -> dict[str, Any]:
    """What the relay makes of a change: the contract's entry, as EventBridge delivers it."""
    return lambda_event(encode_change(change, fast=False).entry)


def test_history_command_as_users_run_it(
    mongo: MongoTarget, store: MongoAuditStore, fresh_db: Database[dict[str, Any]]
) -> None:
    # GIVEN Leche's changes recorded out of order
    for name in ["update-in-transaction", "update-price-change", "insert"]:
        audit(name, store)
    # WHEN the command runs as a separate program
    environ = {**os.environ, "MONGODB_URI": mongo.uri, "AUDIT_DATABASE": fresh_db.name}
    environ.pop("AUDIT_STORE", None)
    completed = subprocess.run(
        [sys.executable, "-m", "audit_writer.history", "--id", str(LECHE)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    # THEN it prints the table, oldest first
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (
        "WHEN                      WHO              OPERATION  FIELDS CHANGED\n"
        "2026-12-03T12:13:21.123Z  ana@example.com  insert     (new document)\n"
        "2026-12-03T12:13:40.123Z  marta            update     precio, updatedBy\n"
        "2026-12-03T12:14:10.123Z  caja-03          update     cantidad, updatedBy\n"
    )

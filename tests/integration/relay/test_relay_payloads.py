"""Payload edge cases end to end: oversize tiers, bad input to the DLQ; `check` and `status`."""

import base64
import json
import subprocess
import sys

import bson
import pytest
from bson.raw_bson import RawBSONDocument
from pymongo.errors import OperationFailure

from change_contract import S3PayloadLoader, decode_event
from change_contract.ejson import STREAM_OPTIONS, ChangeDocument
from relay.deadletter import SqsDeadLetterSink
from relay.encoder import ChangeEncoder
from relay.forwarder import Forwarder, ForwarderOptions
from relay.service import events_client
from relay.settings import RelaySettings
from relay.stream import make_client
from relay.telemetry import Stats
from tests.integration.relay.conftest import relay_env

ACCOUNT = {"account": "123456789012"}  # moto's SQS envelope lacks it (see test_moto_envelope...)


def test_oversize_changes_are_shrunk_in_tiers_and_offloaded_to_s3(
    world, fresh_db, mongo, relay_thread
):
    # GIVEN a 4 KB request limit, pre-images on, and an oversize bucket
    fresh_db.create_collection("productos", changeStreamPreAndPostImages={"enabled": True})
    env = relay_env(
        world,
        mongo.uri,
        fresh_db.name,
        MAX_REQUEST_BYTES="4096",
        OVERSIZE_BUCKET=world.bucket,
        FULL_DOCUMENT_BEFORE_CHANGE="whenAvailable",
    )
    products = fresh_db.productos
    with relay_thread(env) as running:
        # WHEN changes of growing size are written
        products.insert_one({"_id": 1, "nota": "a" * 2500, "cantidad": 1})  # fits whole
        products.update_one({"_id": 1}, {"$set": {"cantidad": 2}})  # doc + pre-image: tier 1
        products.insert_one({"_id": 2, "nota": "b" * 6000})  # tier 2: no fullDocument
        products.update_one({"_id": 2}, {"$set": {"nota": "c" * 6000}})  # tier 3: S3
        world.wait_for(lambda: len(world.seen) >= 4, what="4 changes")
        assert running.relay.stats.total("OversizeOffloaded") == 1

    # THEN each arrived, shrunk as far as needed, and the pointer decodes to the whole change
    details = sorted(world.details(), key=lambda d: (d["clusterTime"]["t"], d["clusterTime"]["i"]))
    sizes = [(d["operationType"], d.get("truncated"), "payloadRef" in d) for d in details]
    assert "truncated" not in details[0], sizes
    assert details[1].get("truncated") == ["fullDocumentBeforeChange"], sizes
    assert details[1]["fullDocument"]["cantidad"] == 2
    assert details[2]["truncated"] == ["fullDocument"]
    assert "payloadRef" in details[3]
    envelope = next(e for es in world.seen.values() for e in es if "payloadRef" in e["detail"])
    event = decode_event(
        {**ACCOUNT, **envelope}, payload_loader=S3PayloadLoader(world.client("s3"))
    )
    assert event.detail.update_description is not None
    assert event.detail.update_description.updated_fields == {"nota": "c" * 6000}


def test_secantus_refuses_invalid_utf8_that_mongod_stores(mongo, fresh_db):
    """SecantusDB validates UTF-8 on insert; mongod stores such strings (from legacy drivers)."""
    raw = bson.encode({"_id": 1, "nombre": "XXXX"}).replace(b"XXXX", b"\xff\xfeXX")
    if mongo.is_secantus:
        with pytest.raises(OperationFailure, match="utf-8"):
            fresh_db.productos.insert_one(RawBSONDocument(raw))
    else:
        fresh_db.productos.insert_one(RawBSONDocument(raw))
        assert fresh_db.productos.count_documents({}) == 1


def test_a_change_with_invalid_utf8_is_dead_lettered_with_its_raw_bytes(
    world, fresh_db, mongo, monkeypatch
):
    # GIVEN a real change read from the server as the relay reads it, its string corrupted as a
    # legacy driver would (SecantusDB refuses to store such a string; see the test above)
    client = make_client(mongo.uri)
    assert client.codec_options.document_class is ChangeDocument
    client.close()
    collection = fresh_db.get_collection("productos", codec_options=STREAM_OPTIONS)
    with collection.watch(max_await_time_ms=200) as stream:
        collection.insert_one({"n": 1, "nombreProducto": "XXXX"})
        change = None
        while change is None:
            change = stream.try_next()
    assert isinstance(change, ChangeDocument)
    corrupted = ChangeDocument(change.raw.replace(b"XXXX", b"\xff\xfeXX"), STREAM_OPTIONS)
    assert corrupted["_id"] == change["_id"]  # pymongo would still read its resume token
    settings = RelaySettings.from_env(relay_env(world, mongo.uri, fresh_db.name))
    stats = Stats()
    encoder = ChangeEncoder(
        bus_name=world.bus, source="test.relay", max_entry_bytes=1_048_576, stats=stats
    )
    dead = SqsDeadLetterSink(world.client("sqs"), world.dlq_url, "r1", stats)
    forwarder = Forwarder(events_client(settings), dead, stats, ForwarderOptions())

    # WHEN the relay's encoder and forwarder handle it, between two good changes
    good = encoder.encode(change)
    forwarder.add(good)
    bad = encoder.encode(corrupted)
    forwarder.add(bad)
    assert forwarder.drain(30)
    forwarder.close()

    # THEN it is in the DLQ with its id, the reason and its exact bytes; the watermark passed it
    [letter] = world.dead_letters()
    assert letter["eventId"] == bad.event_id
    assert letter["errorCode"] == "BadInput"
    assert "Extended JSON" in letter["reason"]
    assert base64.b64decode(letter["rawEventBson"]) == corrupted.raw
    assert forwarder.watermark is not None
    assert forwarder.watermark.token == bad.token
    assert stats.total("BadInput") == 1


def run_cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", command],
        env={"PATH": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_reports_what_it_would_watch_and_status_the_checkpoint(
    world, fresh_db, mongo, relay_thread
):
    env = relay_env(world, mongo.uri, fresh_db.name, WATCH_COLLECTIONS="productos,pedidos")

    checked = run_cli("check", env)

    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] is True
    assert report["watch"]["scope"] == {
        "level": "collections",
        "db": fresh_db.name,
        "collections": ["productos", "pedidos"],
    }
    assert report["eventBus"]["ok"] is True
    assert report["checkpoint"]["checkpoint"] is None

    # WHEN the relay has run and checkpointed, status shows the position and its age
    with relay_thread(env):
        fresh_db.productos.insert_one({"n": 1})
        world.wait_for(lambda: world.checkpoint(env["RELAY_ID"]) is not None, what="checkpoint")
    status = run_cli("status", env)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["relayId"] == env["RELAY_ID"]
    assert shown["checkpointAgeSeconds"] < 60
    assert shown["clusterTime"]["t"] > 0


def test_check_fails_naming_the_missing_bus(world, fresh_db, mongo):
    env = relay_env(world, mongo.uri, fresh_db.name, EVENT_BUS_NAME="no-such-bus")

    checked = run_cli("check", env)

    assert checked.returncode == 1
    assert "eventBus" in checked.stderr
    assert json.loads(checked.stdout)["eventBus"]["ok"] is False

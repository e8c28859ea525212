"""The backfill marking of the contract: a read of an existing document, told apart by `origin`."""

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest
from bson import Decimal128, ObjectId, Timestamp

from change_contract import (
    ContractError,
    decode_event,
    encode_backfill,
    encode_change,
)
from change_contract.encode import backfill_change, backfill_event_id
from localdev.samples import lambda_event

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[3]
        / "layers/shared/change_contract/schema/detail.schema.json"
    ).read_text()
)
NS = {"db": "clase", "coll": "productos"}
SNAPSHOT = Timestamp(1_796_300_000, 7)
DOC = {"_id": ObjectId("6750a1f0c2b4a1e0f0a1b001"), "nombreProducto": "Leche", "cantidad": 3}


def validate(detail: dict) -> None:
    jsonschema.validate(detail, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_backfill_read_is_an_insert_marked_backfill_with_its_snapshot():
    # GIVEN an existing document read for a snapshot
    # WHEN it is encoded as a backfill read
    encoded = encode_backfill(DOC, NS, SNAPSHOT, bus_name="bus")
    detail = json.loads(encoded.entry["Detail"])

    # THEN it is an insert with the document, marked, and valid against the schema
    assert detail["operationType"] == "insert"
    assert detail["origin"] == "backfill"
    assert detail["snapshotTime"] == {"t": SNAPSHOT.time, "i": SNAPSHOT.inc}
    assert detail["clusterTime"] == detail["snapshotTime"]
    assert detail["fullDocument"]["cantidad"] == 3
    assert detail["documentKey"] == {"_id": {"$oid": str(DOC["_id"])}}
    assert encoded.event_id.startswith("backfill:")
    assert encoded.entry["EventBusName"] == "bus"
    validate(detail)

    # AND decodes with the marking
    event = decode_event(lambda_event(encoded.entry))
    assert event.detail.is_backfill
    assert event.detail.origin == "backfill"
    assert event.detail.snapshot_time is not None
    assert event.detail.snapshot_time.as_timestamp() == SNAPSHOT
    assert event.detail.full_document == DOC


def test_event_id_is_stable_across_resends_and_differs_per_snapshot_and_document():
    first = encode_backfill(DOC, NS, SNAPSHOT).event_id
    again = encode_backfill({**DOC, "cantidad": 99}, NS, SNAPSHOT).event_id
    later = encode_backfill(DOC, NS, Timestamp(SNAPSHOT.time, SNAPSHOT.inc + 1)).event_id
    other = encode_backfill({**DOC, "_id": ObjectId()}, NS, SNAPSHOT).event_id
    elsewhere = encode_backfill(DOC, {"db": "clase", "coll": "otros"}, SNAPSHOT).event_id
    assert first == again
    assert len({first, later, other, elsewhere}) == 4


def test_event_id_depends_on_the_id_type():
    assert backfill_event_id(NS, 1, SNAPSHOT) != backfill_event_id(NS, "1", SNAPSHOT)


def test_real_changes_carry_no_origin():
    change = {
        "_id": {"_data": "8267"},
        "operationType": "insert",
        "clusterTime": SNAPSHOT,
        "ns": NS,
        "documentKey": {"_id": DOC["_id"]},
        "fullDocument": DOC,
    }
    detail = json.loads(encode_change(change).entry["Detail"])
    assert "origin" not in detail
    assert "snapshotTime" not in detail
    assert not decode_event(lambda_event(encode_change(change).entry)).detail.is_backfill


def test_unknown_origin_is_rejected_naming_it():
    change = backfill_change(DOC, NS, SNAPSHOT)
    change["origin"] = "import"
    with pytest.raises(ContractError, match="unknown origin 'import'"):
        encode_change(change)


def test_backfill_without_snapshot_time_is_rejected():
    change = backfill_change(DOC, NS, SNAPSHOT)
    change["snapshotTime"] = 5
    with pytest.raises(ContractError, match="snapshotTime"):
        encode_change(change)


def test_document_without_id_is_rejected():
    with pytest.raises(ContractError, match="_id"):
        encode_backfill({"cantidad": 1}, NS, SNAPSHOT)


def test_backfill_read_shrinks_like_a_change_and_keeps_its_marking():
    big = {**DOC, "notes": "x" * 5000}
    encoded = encode_backfill(big, NS, SNAPSHOT, omit=("fullDocument",))
    detail = json.loads(encoded.entry["Detail"])
    assert detail["truncated"] == ["fullDocument"]
    assert detail["origin"] == "backfill"
    validate(detail)


def test_read_time_is_the_entry_time():
    read_at = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    encoded = encode_backfill({**DOC, "precio": Decimal128("1.10")}, NS, SNAPSHOT, read_at=read_at)
    assert encoded.entry["Time"] == read_at


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"origin": "backfill"}, "snapshotTime"),
        ({"origin": "backfill", "snapshotTime": {"t": 1, "i": 1}, "operationType": "update"}, None),
        ({"origin": "somewhere"}, None),
    ],
)
def test_schema_and_model_refuse_a_malformed_backfill_marking(change, problem):
    detail = json.loads(encode_backfill(DOC, NS, SNAPSHOT).entry["Detail"])
    del detail["snapshotTime"]
    detail.update(change)
    with pytest.raises(jsonschema.ValidationError):
        validate(detail)
    event = lambda_event(encode_backfill(DOC, NS, SNAPSHOT).entry)
    event["detail"] = detail
    with pytest.raises(ContractError, match=problem):
        decode_event(event)

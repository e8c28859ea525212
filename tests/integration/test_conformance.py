"""What this project relies on from MongoDB, pinned against whichever server is in use.

Runs on SecantusDB by default and on a real replica set when MONGODB_URI is set, so a
difference between the two shows up here first. Shapes follow the MongoDB manual's change
event reference (insert, update, replace, delete, drop, invalidate).
"""

import json

import pytest
from bson import Timestamp
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError, OperationFailure

from change_contract import decode_event, encode_change
from change_contract.ejson import CODEC_OPTIONS
from localdev.samples import lambda_event
from localdev.servers import running_secantus

HISTORY_LOST = 286
PRODUCT = {"nombreProducto": "Leche", "cantidad": 12}


@pytest.fixture
def productos(fresh_db):
    """A collection with pre-images enabled, as the project's deployment expects."""
    fresh_db.create_collection("productos", changeStreamPreAndPostImages={"enabled": True})
    return fresh_db.productos


def watch(collection, **options):
    options.setdefault("full_document", "updateLookup")
    options.setdefault("full_document_before_change", "whenAvailable")
    return collection.watch(max_await_time_ms=2000, **options)


def next_change(stream):
    change = stream.try_next()
    for _ in range(20):
        if change is not None:
            return change
        change = stream.try_next()
    raise AssertionError("no change event arrived")


def test_event_shapes_per_operation_type(productos):
    with watch(productos) as stream:
        inserted = productos.insert_one(dict(PRODUCT)).inserted_id
        productos.update_one({"_id": inserted}, {"$set": {"cantidad": 5}, "$unset": {"x": ""}})
        productos.replace_one({"_id": inserted}, {"nombreProducto": "Leche", "cantidad": 7})
        productos.delete_one({"_id": inserted})
        insert, update, replace, delete = (next_change(stream) for _ in range(4))

    key = {"_id": inserted}
    assert insert["operationType"] == "insert"
    assert {"_id", "clusterTime", "wallTime", "ns", "documentKey", "fullDocument"} <= set(insert)
    assert "updateDescription" not in insert
    assert insert["documentKey"] == key
    assert insert["fullDocument"] == {"_id": inserted, **PRODUCT}

    assert update["operationType"] == "update"
    assert update["updateDescription"]["updatedFields"] == {"cantidad": 5}
    assert update["updateDescription"]["removedFields"] == []
    assert update["updateDescription"]["truncatedArrays"] == []
    assert update["fullDocumentBeforeChange"]["cantidad"] == 12

    assert replace["operationType"] == "replace"
    assert "updateDescription" not in replace
    assert replace["fullDocument"]["cantidad"] == 7
    assert replace["fullDocumentBeforeChange"]["cantidad"] == 5

    assert delete["operationType"] == "delete"
    assert "fullDocument" not in delete
    assert delete["documentKey"] == key
    assert delete["fullDocumentBeforeChange"]["cantidad"] == 7

    ordered = [event["clusterTime"] for event in (insert, update, replace, delete)]
    assert ordered == sorted(ordered)
    assert isinstance(insert["clusterTime"], Timestamp)
    assert isinstance(insert["_id"]["_data"], str)


def test_real_events_satisfy_the_contract(productos):
    raw = productos.with_options(codec_options=CODEC_OPTIONS)
    with watch(raw) as stream:
        inserted = productos.insert_one(dict(PRODUCT)).inserted_id
        productos.update_one({"_id": inserted}, {"$inc": {"cantidad": -3}})
        productos.delete_one({"_id": inserted})
        changes = [next_change(stream) for _ in range(3)]

    for change in changes:
        encoded = encode_change(change)
        event = decode_event(json.loads(json.dumps(lambda_event(encoded.entry))))
        assert event.detail.event_id == change["_id"]["_data"]
        assert event.detail.document_id == inserted
    update = decode_event(lambda_event(encode_change(changes[1]).entry)).detail
    assert update.update_description.updated_fields == {"cantidad": 9}
    assert update.full_document_before_change == {"_id": inserted, **PRODUCT}


def test_update_lookup_of_a_deleted_document_gives_none(productos):
    inserted = productos.insert_one(dict(PRODUCT)).inserted_id
    with productos.watch(full_document="updateLookup") as stream:
        productos.update_one({"_id": inserted}, {"$set": {"cantidad": 1}})
        productos.delete_one({"_id": inserted})
        update = next_change(stream)
    assert update["operationType"] == "update"
    assert update["fullDocument"] is None


def test_pre_images_only_where_enabled(fresh_db):
    fresh_db.create_collection("plain")
    inserted = fresh_db.plain.insert_one(dict(PRODUCT)).inserted_id
    with watch(fresh_db.plain) as stream:
        fresh_db.plain.update_one({"_id": inserted}, {"$set": {"cantidad": 2}})
        update = next_change(stream)
    assert update.get("fullDocumentBeforeChange") is None


def test_resume_after_a_token_gives_the_following_changes(productos):
    with productos.watch() as stream:
        productos.insert_one({"n": 1})
        first = next_change(stream)
    productos.insert_many([{"n": 2}, {"n": 3}])
    with productos.watch(resume_after=first["_id"]) as resumed:
        following = [next_change(resumed)["fullDocument"]["n"] for _ in range(2)]
    assert following == [2, 3]


def test_post_batch_resume_token_advances_while_quiet(productos, fresh_db):
    with productos.watch(max_await_time_ms=200) as stream:
        assert stream.try_next() is None
        before = stream.resume_token
        fresh_db.elsewhere.insert_many([{"n": n} for n in range(5)])
        for _ in range(10):
            assert stream.try_next() is None
            if stream.resume_token != before:
                break
        after = stream.resume_token
    assert after is not None
    assert after != before
    with productos.watch(resume_after=after, max_await_time_ms=200) as resumed:
        productos.insert_one({"n": "after"})
        assert next_change(resumed)["fullDocument"]["n"] == "after"


def test_drop_invalidates_and_closes_the_stream(productos):
    productos.insert_one({"n": 1})
    with productos.watch() as stream:
        productos.drop()
        drop, invalidate = next_change(stream), next_change(stream)
        alive = stream.alive
    assert drop["operationType"] == "drop"
    assert invalidate["operationType"] == "invalidate"
    assert not alive
    # startAfter an invalidate token reopens on the (re-created) namespace.
    with productos.watch(start_after=invalidate["_id"]) as reopened:
        productos.insert_one({"n": 2})
        assert next_change(reopened)["operationType"] == "insert"


def test_history_lost_past_the_oplog_window(mongo):
    # SecantusDB: a server with a tiny oplog, pruned by writing past it (pruning runs every 1,000
    # oplog writes). A real replica set cannot be shrunk from a test, so there we ask for a start
    # before the oldest oplog entry, which mongod refuses the same way.
    if mongo.is_secantus:
        with running_secantus(oplog_max_entries=100) as bounded:
            client = MongoClient(bounded.uri)
            collection = client.t.c
            with collection.watch() as stream:
                collection.insert_one({"n": 0})
                token = next_change(stream)["_id"]
            collection.insert_many([{"n": n} for n in range(1200)])
            with pytest.raises(OperationFailure) as caught, collection.watch(resume_after=token):
                pass
            client.close()
    else:
        client = mongo.client()
        before_the_oplog = Timestamp(1, 0)
        with (
            pytest.raises(OperationFailure) as caught,
            client.t_history.c.watch(start_at_operation_time=before_the_oplog) as stream,
        ):
            stream.try_next()
        client.close()
    assert caught.value.code == HISTORY_LOST


def test_unique_index_raises_duplicate_key_11000(fresh_db):
    fresh_db.audit.create_index("eventId", unique=True)
    fresh_db.audit.insert_one({"eventId": "a"})
    with pytest.raises(DuplicateKeyError) as caught:
        fresh_db.audit.insert_one({"eventId": "a"})
    assert caught.value.code == 11000

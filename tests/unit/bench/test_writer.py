"""The writer makes realistic ~1 KB products and the mix of inserts and updates it is asked for."""

import random
from typing import Any, cast

import bson
import mongomock
import pytest
from pymongo import UpdateOne

from bench.function_runner import variant_of
from bench.writer import product, write_changes


def test_products_are_about_one_kilobyte():
    rng = random.Random(1)

    sizes = [len(bson.encode(product(rng, number))) for number in range(50)]

    assert all(850 <= size <= 1200 for size in sizes)


class RecordingCollection:
    """Records the writes. (mongomock 4.3 cannot take pymongo 4.20's UpdateOne in bulk_write:
    it rejects the `sort` argument; the real server path is covered by the integration smoke.)"""

    def __init__(self):
        self.documents: list[dict] = []
        self.updates: list = []

    def insert_many(self, documents, ordered=True):
        self.documents.extend(documents)

    def bulk_write(self, operations):
        self.updates.extend(operations)


def test_write_changes_inserts_then_updates_in_the_asked_share():
    collection = RecordingCollection()

    result = write_changes(cast(Any, collection), changes=400, update_share=0.25, batch=100)

    # The first batch has nothing to update yet; the next three are a quarter updates.
    assert (result.inserts, result.updates) == (100 + 3 * 75, 3 * 25)
    assert len(collection.documents) == result.inserts
    assert len(collection.updates) == result.updates
    written = {document["_id"] for document in collection.documents}
    assert all(update._filter["_id"] in written for update in collection.updates)


def test_each_function_invocation_is_about_another_document_and_event():
    event: dict[str, Any] = {
        "id": "a",
        "detail": {
            "eventId": "e1",
            "documentKey": {"_id": {"$oid": "6750a1f0c2b4a1e0f0a1b001"}},
            "fullDocument": {"_id": {"$oid": "6750a1f0c2b4a1e0f0a1b001"}, "cantidad": 3},
        },
    }

    first, second = variant_of(event, 1), variant_of(event, 2)

    assert first["detail"]["eventId"] != second["detail"]["eventId"]
    assert first["detail"]["documentKey"] != second["detail"]["documentKey"]
    assert first["detail"]["fullDocument"]["_id"] == first["detail"]["documentKey"]["_id"]
    assert event["detail"]["eventId"] == "e1"


def test_mongomock_cannot_take_pymongo_4_20_update_one_in_bulk_write():
    # Why the writer test above records writes instead of using mongomock: pymongo 4.20's
    # UpdateOne passes `sort` to the bulk builder, which mongomock 4.3 does not accept. The real
    # server path is covered by tests/integration/bench/test_smoke.py.
    collection = mongomock.MongoClient().db.productos
    collection.insert_one({"_id": 1, "cantidad": 5})

    with pytest.raises(TypeError, match="sort"):
        collection.bulk_write([UpdateOne({"_id": 1}, {"$set": {"cantidad": 4}})])

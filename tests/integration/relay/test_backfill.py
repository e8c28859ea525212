"""`python -m relay backfill` against SecantusDB (or MONGODB_URI) and moto_server.

What reached the bus is read from the SQS queue a rule on the bus feeds (see conftest.py).
"""

import json
import os
import sys
import threading
import time

import pytest
from bson import ObjectId

from localdev.servers import ManagedProcess, wait_until
from relay.backfill import Backfill, BackfillOptions, DynamoDBProgressStore, namespace_query
from relay.settings import RelaySettings
from tests.integration.relay.conftest import relay_env

# moto_server delivers to SQS at ~30-100 events/s here (it re-parses JSONPath expressions for each
# event and target), so the tests that read the bus back through SQS keep to about a thousand.
PRODUCTS = 1000


def seed(collection, count: int) -> list[ObjectId]:
    ids = [ObjectId() for _ in range(count)]
    documents = [
        {"_id": ids[n], "nombreProducto": f"p{n}", "cantidad": n % 50, "n": n} for n in range(count)
    ]
    for start in range(0, count, 500):
        collection.insert_many(documents[start : start + 500])
    return ids


def backfill_reads(world) -> dict[str, list[dict]]:
    """`_id` (hex) -> every backfill envelope received for it."""
    reads: dict[str, list[dict]] = {}
    for envelopes in world.seen.values():
        for envelope in envelopes:
            detail = envelope["detail"]
            if detail.get("origin") == "backfill":
                reads.setdefault(detail["documentKey"]["_id"]["$oid"], []).append(envelope)
    return reads


class Writer(threading.Thread):
    """Writes while the backfill reads: updates that tag `rev`, and new products.

    Starts writing once `ready()` says the stream position was recorded: a write before it is
    part of the documents read, not of the stream, and this test tells them apart by the stream.
    """

    def __init__(self, collection, ids: list[ObjectId], ready) -> None:
        super().__init__(daemon=True)
        self.collection = collection
        self.ids = ids
        self.ready = ready
        self.updates: list[tuple[str, int]] = []
        self.inserted: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.ready():
            if self.stop.wait(0.01):
                return
        rev = 0
        while not self.stop.is_set() and rev < 120:
            rev += 1
            target = self.ids[(rev * 37) % len(self.ids)]
            self.collection.update_one({"_id": target}, {"$set": {"rev": rev}})
            self.updates.append((str(target), rev))
            if rev % 4 == 0:
                new_id = ObjectId()
                self.collection.insert_one({"_id": new_id, "nombreProducto": "new", "cantidad": 1})
                self.inserted.append(str(new_id))
            self.stop.wait(0.005)


@pytest.mark.slow
def test_every_document_and_every_concurrent_change_reaches_the_bus(
    world, fresh_db, mongo, relay_thread
):
    # GIVEN thousands of products and someone writing while the backfill runs
    ids = seed(fresh_db.productos, PRODUCTS)
    env = relay_env(world, mongo.uri, fresh_db.name)
    backfill = Backfill(
        RelaySettings.from_env(env),
        BackfillOptions(progress="off", checkpoint_interval_seconds=0.2, batch_size=200),
    )
    writer = Writer(fresh_db.productos, ids, ready=lambda: backfill.forwarder is not None)

    # WHEN the backfill runs, then the relay streams from where the backfill handed over
    writer.start()
    try:
        result = backfill.run()
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert result.exit_code == 0
    assert result.handed_over
    assert len(writer.updates) > 10, "the writer must have overlapped the backfill"
    with relay_thread(env):
        expected_revs = set(writer.updates)

        def streamed_revs() -> set[tuple[str, int]]:
            found = set()
            for detail in world.details():
                fields = (detail.get("updateDescription") or {}).get("updatedFields") or {}
                if "rev" in fields:
                    found.add((detail["documentKey"]["_id"]["$oid"], fields["rev"]))
            return found

        world.wait_for(
            lambda: expected_revs <= streamed_revs(),
            deadline_s=90,
            what="every concurrent update on the bus",
        )

    # THEN every existing document arrived once as a backfill read, marked as such
    reads = backfill_reads(world)
    assert set(reads) >= {str(document_id) for document_id in ids}
    assert all(len(envelopes) == 1 for envelopes in reads.values())
    sample = next(iter(reads.values()))[0]["detail"]
    assert sample["operationType"] == "insert"
    assert sample["snapshotTime"] == {
        "t": result.snapshot.cluster_time.time,
        "i": result.snapshot.cluster_time.inc,
    }
    # AND every concurrent change arrived from the stream: updates and new products alike
    streamed_inserts = {
        detail["documentKey"]["_id"]["$oid"]
        for detail in world.details()
        if detail["operationType"] == "insert" and detail.get("origin") is None
    }
    assert set(writer.inserted) <= streamed_inserts | set(reads)
    # AND progress says complete, with every document acknowledged
    store = DynamoDBProgressStore(world.client("dynamodb"), world.table, env["RELAY_ID"])
    state = store.load()
    assert state is not None
    assert state.status == "complete"
    assert state.sent >= PRODUCTS


def backfill_process(env: dict[str, str], *args: str) -> ManagedProcess:
    full_env = {"PATH": os.environ.get("PATH", ""), **env}
    command = [sys.executable, "-m", "relay", "backfill", "--progress", "log", *args]
    return ManagedProcess("backfill", command, env=full_env)


@pytest.mark.slow
def test_killed_halfway_it_resumes_without_resending_what_was_acknowledged(world, fresh_db, mongo):
    # GIVEN a rate-limited backfill of thousands of products run as a child process
    ids = seed(fresh_db.productos, PRODUCTS)
    env = relay_env(world, mongo.uri, fresh_db.name, BATCH_MAX_ENTRIES="10")
    store = DynamoDBProgressStore(world.client("dynamodb"), world.table, env["RELAY_ID"])
    args = ("--rate", "400", "--checkpoint-interval", "0.2")
    first = backfill_process(env, *args)
    first.start()
    try:
        # WHEN it is killed with SIGKILL once a good part is acknowledged
        def progressed() -> bool:
            if not first.running:
                raise AssertionError(f"backfill exited early:\n{first.output_tail(40)}")
            state = store.load()
            return state is not None and state.sent >= PRODUCTS // 3

        wait_until(progressed, deadline_s=60, what="a third of the backfill acknowledged")
        first.kill()
    finally:
        first.stop()
    at_kill = store.load()
    assert at_kill is not None
    assert at_kill.status == "running"
    assert at_kill.last is not None
    acknowledged_last = at_kill.last["lastId"]
    world.collect()
    sent_by_first = set(backfill_reads(world))
    assert len(sent_by_first) < PRODUCTS, "the backfill finished before it was killed"

    # AND run again
    second = backfill_process(env, *args)
    second.start()
    try:
        wait_until(lambda: not second.running, deadline_s=90, what="the second backfill to end")
        assert second.process.returncode == 0, second.output_tail(40)
    finally:
        second.stop()

    # THEN every product reached the bus, the snapshot was kept across the restart
    world.collect()
    reads = backfill_reads(world)
    assert set(reads) == {str(document_id) for document_id in ids}
    snapshots = {json.dumps(e[0]["detail"]["snapshotTime"]) for e in reads.values()}
    assert len(snapshots) == 1
    # AND nothing up to the acknowledged progress was sent twice; what was sent twice was only
    # what was in flight or acknowledged after the last progress write (same event ids)
    duplicates = [oid for oid, envelopes in reads.items() if len(envelopes) > 1]
    assert all(ObjectId(oid) > acknowledged_last for oid in duplicates)
    in_flight_bound = 8 * 10 + 400 * 0.2 * 2  # in-flight batches + two progress intervals
    assert len(duplicates) <= in_flight_bound
    assert all(len({e["detail"]["eventId"] for e in reads[oid]}) == 1 for oid in duplicates)
    final = store.load()
    assert final is not None
    assert final.status == "complete"


class AcceptingBus:
    """Accepts every entry at once and notes when: isolates the limiter from moto's speed."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def put_events(self, Entries):
        with self.lock:
            self.calls.append((time.monotonic(), len(Entries)))
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "x"} for _ in Entries]}


def test_rate_limit_holds_within_ten_percent(world, fresh_db, mongo):
    # GIVEN products read from MongoDB, a bus that is never the bottleneck, and a rate limit
    seed(fresh_db.productos, 1000)
    env = relay_env(world, mongo.uri, fresh_db.name)
    bus = AcceptingBus()
    rate = 400.0
    backfill = Backfill(
        RelaySettings.from_env(env),
        BackfillOptions(rate_per_second=rate, progress="off"),
        events=bus,
    )

    # WHEN it runs
    result = backfill.run()

    # THEN documents were sent at the limit, within 10% (events over elapsed time)
    assert result.exit_code == 0
    sent = sum(entries for _, entries in bus.calls)
    assert sent == 1000
    first_time, first_entries = bus.calls[0]
    elapsed = bus.calls[-1][0] - first_time
    measured = (sent - first_entries) / elapsed
    assert rate * 0.9 <= measured <= rate * 1.1, measured


@pytest.mark.parametrize("scope", ["collections", "database"])
def test_scope_filter_and_ids_of_several_types(world, fresh_db, mongo, scope):
    # GIVEN two collections, a filter, and ids of several BSON types
    fresh_db.productos.insert_many([{"_id": n, "cantidad": n} for n in range(20)])
    fresh_db.productos.insert_many([{"_id": f"s{n}", "cantidad": n} for n in range(5)])
    fresh_db.otros.insert_many([{"_id": ObjectId(), "cantidad": 1} for _ in range(5)])
    collections = "productos,otros" if scope == "collections" else ""
    env = relay_env(world, mongo.uri, fresh_db.name, collections=collections)
    query = {"cantidad": {"$lt": 15}}

    # WHEN the backfill runs with the filter, in small cursor batches
    backfill = Backfill(
        RelaySettings.from_env(env), BackfillOptions(query=query, progress="off", batch_size=3)
    )
    result = backfill.run()

    # THEN exactly the matching documents of both collections were published
    assert result.exit_code == 0
    world.collect()
    published = [d for d in world.details() if d.get("origin") == "backfill"]
    by_collection = {"productos": 0, "otros": 0}
    for detail in published:
        by_collection[detail["ns"]["coll"]] += 1
    assert by_collection == {"productos": 15 + 5, "otros": 5}


def test_resuming_after_a_number_id_still_reads_string_ids(fresh_db):
    # GIVEN ids of two BSON types; `$gt: 19` alone would match numbers only (type bracketing)
    fresh_db.productos.insert_many([{"_id": n} for n in range(20)])
    fresh_db.productos.insert_many([{"_id": f"s{n}"} for n in range(5)])

    # WHEN reading after the last number
    found = list(fresh_db.productos.find(namespace_query(None, 15), sort=[("_id", 1)]))

    # THEN the later numbers and every string come back, in `_id` order
    assert [d["_id"] for d in found] == [16, 17, 18, 19, "s0", "s1", "s2", "s3", "s4"]

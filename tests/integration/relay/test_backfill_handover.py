"""Backfill handover to streaming: start-up mode, clean stop, a later checkpoint, lost snapshot."""

import base64
import json
import threading
import time
from pathlib import Path

import bson
import pytest
from bson import Timestamp

from localdev import failpoints
from localdev.servers import wait_until
from relay.backfill import (
    EXIT_SNAPSHOT_LOST,
    Backfill,
    BackfillOptions,
    BackfillResult,
    DynamoDBProgressStore,
)
from relay.service import EXIT_LEASE_LOST
from relay.settings import RelaySettings
from tests.integration.relay.conftest import relay_env


class BackfillThread:
    def __init__(self, env: dict[str, str], options: BackfillOptions) -> None:
        self.backfill = Backfill(RelaySettings.from_env(env), options)
        self.result: BackfillResult | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = self.backfill.run()

    def __enter__(self) -> "BackfillThread":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.backfill.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "backfill did not stop within 30 s"


def origins(world) -> list[str | None]:
    return [detail.get("origin") for detail in world.details()]


def test_start_up_mode_backfills_then_streams_what_follows(world, fresh_db, mongo):
    # GIVEN a fresh deployment: products, no checkpoint
    fresh_db.productos.insert_many([{"n": n, "cantidad": n} for n in range(50)])
    env = relay_env(world, mongo.uri, fresh_db.name)

    # WHEN the relay starts in start-up mode and products change afterwards
    with BackfillThread(env, BackfillOptions(then_run=True, progress="off")) as running:

        def streaming() -> bool:
            relay = running.backfill._relay
            return relay is not None and relay.state == "streaming"

        wait_until(streaming, deadline_s=60, what="the relay streaming after the backfill")
        fresh_db.productos.insert_many([{"n": n} for n in range(50, 55)])
        fresh_db.productos.update_one({"n": 1}, {"$set": {"cantidad": 0}})

        # THEN the 50 documents arrive as backfill reads, then the changes as changes
        world.wait_for(lambda: len(world.seen) >= 56, deadline_s=60, what="56 events")
    assert running.result is not None
    assert running.result.exit_code == 0
    assert origins(world).count("backfill") == 50
    operations = [d["operationType"] for d in world.details() if d.get("origin") is None]
    assert sorted(operations) == ["insert"] * 5 + ["update"]


def test_start_up_mode_with_a_checkpoint_streams_without_backfilling(
    world, fresh_db, mongo, relay_thread
):
    # GIVEN a relay that has already streamed and checkpointed
    fresh_db.productos.insert_many([{"n": n} for n in range(10)])
    env = relay_env(world, mongo.uri, fresh_db.name)
    with relay_thread(env):
        wait_until(
            lambda: world.checkpoint(env["RELAY_ID"]) is not None,
            deadline_s=30,
            what="a relay checkpoint",
        )

    # WHEN it restarts in start-up mode
    with BackfillThread(env, BackfillOptions(then_run=True, progress="off")) as running:

        def streaming() -> bool:
            relay = running.backfill._relay
            return relay is not None and relay.state == "streaming"

        wait_until(streaming, deadline_s=60, what="the relay streaming")
        fresh_db.productos.insert_one({"n": 99})

        # THEN it streams at once: no document is read again
        world.wait_for(lambda: 99 in world.inserted_numbers(), what="the new insert")
    assert "backfill" not in origins(world)


def test_a_stopped_backfill_exits_cleanly_and_the_next_run_finishes_it(world, fresh_db, mongo):
    # GIVEN a slow backfill
    fresh_db.productos.insert_many([{"n": n} for n in range(200)])
    env = relay_env(world, mongo.uri, fresh_db.name)
    store = DynamoDBProgressStore(world.client("dynamodb"), world.table, env["RELAY_ID"])
    options = BackfillOptions(rate_per_second=100, progress="off", checkpoint_interval_seconds=0.2)

    # WHEN it is stopped (SIGTERM does this) a part of the way through
    with BackfillThread(env, options) as first:

        def progressed() -> bool:
            state = store.load()
            return state is not None and state.sent >= 50

        wait_until(progressed, deadline_s=60, what="50 documents acknowledged")
    assert first.result is not None
    assert first.result.exit_code == 0
    assert not first.result.handed_over
    stopped = store.load()
    assert stopped is not None
    assert stopped.status == "running"
    assert world.checkpoint(env["RELAY_ID"]) is None

    # THEN the next run continues and completes, and every document reached the bus
    result = Backfill(RelaySettings.from_env(env), BackfillOptions(progress="off")).run()
    assert result.exit_code == 0
    assert result.handed_over
    world.collect()
    read = {d["fullDocument"]["n"] for d in world.details() if d.get("origin") == "backfill"}
    assert read == set(range(200))
    final = store.load()
    assert final is not None
    assert final.status == "complete"
    assert final.sent >= 200


def test_handover_leaves_a_later_relay_checkpoint_alone(world, fresh_db, mongo, relay_thread):
    # GIVEN a relay streaming while a backfill runs, and a change after the snapshot
    fresh_db.productos.insert_many([{"n": n} for n in range(40)])
    env = relay_env(world, mongo.uri, fresh_db.name)
    options = BackfillOptions(rate_per_second=40, progress="off")
    with relay_thread(env), BackfillThread(env, options) as running:
        wait_until(
            lambda: running.backfill.forwarder is not None, deadline_s=30, what="snapshot taken"
        )
        fresh_db.productos.insert_one({"n": 1000})

        # WHEN the backfill finishes after the relay checkpointed that change
        running.thread.join(timeout=60)
        item = world.checkpoint(env["RELAY_ID"])

    # THEN the relay's later checkpoint was kept, not moved back to the snapshot
    assert running.result is not None
    assert running.result.exit_code == 0
    assert not running.result.handed_over
    snapshot = running.result.snapshot.cluster_time
    assert item is not None
    stored = Timestamp(int(item["clusterTimeT"]["N"]), int(item["clusterTimeI"]["N"]))
    assert stored > snapshot


@pytest.mark.slow
def test_snapshot_pruned_from_the_oplog_before_handover_exits_8(world):
    """SecantusDB's bounded oplog makes real history loss; mongod needs hours for the same."""
    from pymongo import MongoClient

    from localdev.servers import running_secantus

    with running_secantus(oplog_max_entries=200) as small:
        client: MongoClient = MongoClient(small.uri)
        db = client.pruned
        db.productos.insert_many([{"n": n} for n in range(20)])
        env = relay_env(world, small.uri, "pruned")
        options = BackfillOptions(rate_per_second=10, progress="off")

        # GIVEN a slow backfill WHEN far more than the oplog holds is written meanwhile
        with BackfillThread(env, options) as running:
            wait_until(
                lambda: running.backfill.forwarder is not None, deadline_s=30, what="snapshot"
            )
            for start in range(0, 2_400, 400):
                db.otros.insert_many([{"bulk": n} for n in range(start, start + 400)])
            running.thread.join(timeout=60)
        client.close()

    # THEN it says the position it recorded is gone, instead of handing over a gap
    assert running.result is not None
    assert running.result.exit_code == EXIT_SNAPSHOT_LOST
    assert world.checkpoint(env["RELAY_ID"]) is None


def test_an_oversize_document_is_shrunk_by_the_relays_tiers(world, fresh_db, mongo):
    # GIVEN a document larger than the request limit, beside a small one
    fresh_db.productos.insert_many([{"_id": 1, "notes": "x" * 6000}, {"_id": 2, "cantidad": 3}])
    env = relay_env(world, mongo.uri, fresh_db.name, MAX_REQUEST_BYTES="4096")

    # WHEN backfilled
    result = Backfill(RelaySettings.from_env(env), BackfillOptions(progress="off")).run()

    # THEN both arrive; the large one without its document, saying so, still marked backfill
    assert result.exit_code == 0
    world.collect()
    by_id = {d["documentKey"]["_id"]: d for d in world.details()}
    assert by_id[1]["truncated"] == ["fullDocument"]
    assert "fullDocument" not in by_id[1]
    assert by_id[1]["origin"] == "backfill"
    assert by_id[2]["fullDocument"] == {"_id": 2, "cantidad": 3}


class RejectingBus:
    """Accepts every entry except the read of product n=5, which it rejects for good."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    def put_events(self, Entries):
        results = []
        for entry in Entries:
            n = json.loads(entry["Detail"])["fullDocument"]["n"]
            if n == 5:
                results.append({"ErrorCode": "MalformedDetail", "ErrorMessage": "no"})
            else:
                self.accepted.append(n)
                results.append({"EventId": str(n)})
        failed = sum(1 for result in results if "ErrorCode" in result)
        return {"FailedEntryCount": failed, "Entries": results}


def test_a_read_rejected_for_good_is_dead_lettered_and_the_backfill_goes_on(world, fresh_db, mongo):
    # GIVEN an EventBridge that rejects one read for good, and a dead-letter queue
    fresh_db.productos.insert_many([{"_id": n, "n": n} for n in range(20)])
    env = relay_env(world, mongo.uri, fresh_db.name)
    bus = RejectingBus()

    # WHEN backfilled
    result = Backfill(
        RelaySettings.from_env(env), BackfillOptions(progress="off"), events=bus
    ).run()

    # THEN the others were sent, the rejected one is in the DLQ with its raw change, and done
    assert result.exit_code == 0
    assert sorted(bus.accepted) == [n for n in range(20) if n != 5]
    letters = world.dead_letters()
    assert len(letters) == 1
    assert letters[0]["errorCode"] == "MalformedDetail"
    assert letters[0]["eventId"].startswith("backfill:")
    raw = bson.decode(base64.b64decode(letters[0]["rawEventBson"]))
    assert raw["fullDocument"] == {"_id": 5, "n": 5}
    assert raw["origin"] == "backfill"


def test_with_halt_on_permanent_failure_it_stops_before_the_rejected_read(world, fresh_db, mongo):
    # GIVEN ON_PERMANENT_FAILURE=halt
    fresh_db.productos.insert_many([{"_id": n, "n": n} for n in range(20)])
    env = relay_env(world, mongo.uri, fresh_db.name, ON_PERMANENT_FAILURE="halt")
    env["BATCH_MAX_ENTRIES"] = "1"
    env["MAX_IN_FLIGHT_REQUESTS"] = "1"

    # WHEN the read of n=5 is rejected
    backfill = Backfill(
        RelaySettings.from_env(env), BackfillOptions(progress="off"), events=RejectingBus()
    )
    result = backfill.run()

    # THEN it halts (exit 3), its progress stands before the rejected read, nothing handed over
    assert result.exit_code == 3
    assert not result.handed_over
    state = DynamoDBProgressStore(world.client("dynamodb"), world.table, env["RELAY_ID"]).load()
    assert state is not None
    assert state.status == "running"
    assert state.last is not None
    assert state.last["lastId"] < 5


def test_a_failed_read_reopens_after_the_last_document_read(
    world, fresh_db, mongo, mongo_client, caplog
):
    # GIVEN a collection read in small batches, and getMore losing its connection twice
    fresh_db.productos.insert_many([{"_id": n, "n": n} for n in range(100)])
    env = relay_env(world, mongo.uri, fresh_db.name)
    backfill = Backfill(RelaySettings.from_env(env), BackfillOptions(progress="off", batch_size=10))

    # WHEN backfilled through the failures
    with failpoints.fail_point(
        mongo_client,
        "failCommand",
        {"times": 2},
        {"failCommands": ["getMore"], "closeConnection": True},
    ):
        result = backfill.run()

    # THEN each document was read and sent once: the cursor reopened after the last one read
    assert result.exit_code == 0
    world.collect()
    read = [d["fullDocument"]["n"] for d in world.details() if d.get("origin") == "backfill"]
    assert sorted(read) == list(range(100))
    assert sum(len(envelopes) for envelopes in world.seen.values()) == 100
    assert "backfill read failed, reopening" in caplog.text


@pytest.mark.slow
def test_start_up_mode_restarts_fine_long_after_the_snapshot_left_the_oplog(world, relay_thread):
    """A finished backfill must not stop the relay from starting once its snapshot is pruned."""
    from pymongo import MongoClient

    from localdev.servers import running_secantus

    with running_secantus(oplog_max_entries=200) as small:
        client: MongoClient = MongoClient(small.uri)
        db = client.pruned
        db.productos.insert_many([{"n": n} for n in range(5)])
        env = relay_env(world, small.uri, "pruned")
        options = BackfillOptions(then_run=True, progress="off")

        # GIVEN a finished start-up backfill, and a relay that streamed far past its snapshot
        with BackfillThread(env, options) as first:

            def streaming() -> bool:
                relay = first.backfill._relay
                return relay is not None and relay.state == "streaming"

            wait_until(streaming, deadline_s=60, what="the relay streaming")
            for start in range(0, 2_400, 400):
                db.otros.insert_many([{"bulk": n} for n in range(start, start + 400)])
            db.productos.insert_one({"n": 100})
            world.wait_for(lambda: 100 in world.inserted_numbers(), what="the last insert")
        assert first.result is not None
        assert first.result.exit_code == 0

        # WHEN the task restarts in start-up mode
        with BackfillThread(env, options) as second:
            wait_until(
                lambda: (
                    second.backfill._relay is not None
                    and second.backfill._relay.state == "streaming"
                ),
                deadline_s=60,
                what="the relay streaming again",
            )
            db.productos.insert_one({"n": 101})

            # THEN it streams from its own checkpoint (no exit 8 about the old snapshot)
            world.wait_for(lambda: 101 in world.inserted_numbers(), what="the next insert")
        client.close()
    assert second.result is not None
    assert second.result.exit_code == 0


def _health(env: dict[str, str]) -> str | None:
    try:
        return str(json.loads(Path(env["HEALTH_FILE"]).read_text())["state"])
    except (OSError, ValueError, KeyError):
        return None


def test_start_up_mode_with_the_lease_backfills_once_and_the_standby_takes_over(
    world, fresh_db, mongo
):
    # GIVEN a fresh deployment of two tasks in start-up mode with a 3 s lease, each with its
    # own health file, and a paced backfill that keeps the leader reading for about 2 s
    fresh_db.productos.insert_many([{"n": n, "cantidad": n} for n in range(100)])
    base = relay_env(
        world,
        mongo.uri,
        fresh_db.name,
        LEASE_ENABLED="true",
        LEASE_SECONDS="3",
        HEALTH_MAX_AGE_SECONDS="4",
    )
    envs = [{**base, "HEALTH_FILE": f"{base['HEALTH_FILE']}.task{task}"} for task in (1, 2)]
    options = BackfillOptions(then_run=True, progress="off", rate_per_second=50)

    # WHEN both start at once
    with BackfillThread(envs[0], options) as first, BackfillThread(envs[1], options) as second:
        tasks = (first, second)

        def leader_and_standby() -> bool:
            states = sorted(_health(env) or "" for env in envs)
            return states == ["backfilling", "standby"]

        # THEN one backfills while the other waits as a healthy standby
        wait_until(leader_and_standby, deadline_s=30, what="one task backfilling, one standby")
        leader = next(t for t, env in zip(tasks, envs, strict=True) if _health(env) != "standby")
        standby = second if leader is first else first

        def streaming(task: BackfillThread) -> bool:
            relay = task.backfill._relay
            return relay is not None and relay.state == "streaming"

        wait_until(lambda: streaming(leader), deadline_s=60, what="the leader streaming")
        world.wait_for(lambda: len(world.seen) >= 100, deadline_s=60, what="100 backfill reads")
        assert standby.backfill._relay is None

        # WHEN the leader stops, the standby takes the lease and streams from the checkpoint
        leader.backfill.stop()
        leader.thread.join(timeout=30)
        wait_until(lambda: streaming(standby), deadline_s=30, what="the standby streaming")
        fresh_db.productos.insert_one({"n": 100})
        world.wait_for(lambda: 100 in world.inserted_numbers(), what="the insert after takeover")

    # THEN every document was read once, by the leader alone
    backfilled = [d["fullDocument"]["n"] for d in world.details() if d.get("origin") == "backfill"]
    assert sorted(backfilled) == list(range(100))
    assert all(len(envelopes) == 1 for envelopes in world.seen.values())
    assert [task.result.exit_code for task in tasks if task.result] == [0, 0]


def test_start_up_mode_stops_with_exit_5_when_its_lease_is_taken(world, fresh_db, mongo):
    # GIVEN a start-up backfill holding a 3 s lease, reading slowly
    fresh_db.productos.insert_many([{"n": n} for n in range(200)])
    env = relay_env(world, mongo.uri, fresh_db.name, LEASE_ENABLED="true", LEASE_SECONDS="3")
    store = DynamoDBProgressStore(world.client("dynamodb"), world.table, env["RELAY_ID"])
    options = BackfillOptions(
        then_run=True, progress="off", rate_per_second=40, checkpoint_interval_seconds=0.2
    )
    with BackfillThread(env, options) as running:

        def progressed() -> bool:
            state = store.load()
            return state is not None and state.sent >= 20

        wait_until(progressed, deadline_s=60, what="20 documents acknowledged")

        # WHEN another task takes the lease (as after a pause longer than the lease)
        world.client("dynamodb").update_item(
            TableName=world.table,
            Key={"relayId": {"S": f"{env['RELAY_ID']}#lease"}},
            UpdateExpression="SET #owner = :other, expiresAt = :later ADD fencingToken :one",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":other": {"S": "another-task"},
                ":later": {"N": str(time.time() + 60)},
                ":one": {"N": "1"},
            },
        )

        # THEN the backfill stops with the lease-lost exit code, unfinished, and leaves the
        # progress and the relay's checkpoint to the new holder
        running.thread.join(timeout=30)
        assert running.result is not None
        assert running.result.exit_code == EXIT_LEASE_LOST
    stopped = store.load()
    assert stopped is not None
    assert stopped.status == "running"
    assert stopped.sent < 200
    assert world.checkpoint(env["RELAY_ID"]) is None
    assert running.backfill._relay is None

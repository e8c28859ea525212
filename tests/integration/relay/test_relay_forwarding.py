"""The relay against SecantusDB (or MONGODB_URI) and moto_server: forwarding, faults, recovery."""

import json

from bson import Timestamp

from change_contract import decode_event
from localdev import failpoints
from localdev.eventbridge_proxy import Fault, running_proxy
from localdev.servers import wait_until
from tests.integration.relay.conftest import SOURCE, relay_env


def test_every_change_reaches_the_bus_in_batches_and_decodes(world, fresh_db, mongo, relay_thread):
    # GIVEN a relay watching one collection
    env = relay_env(world, mongo.uri, fresh_db.name)
    with relay_thread(env) as running:
        # WHEN inserts, updates and deletes are written (and a change elsewhere in the database)
        products = fresh_db.productos
        products.insert_many(
            [{"n": n, "nombreProducto": f"p{n}", "cantidad": n} for n in range(60)]
        )
        products.update_one({"n": 3}, {"$set": {"cantidad": 1}})
        products.delete_one({"n": 4})
        fresh_db.otra.insert_one({"n": 999})

        # THEN every change arrives, as the contract describes it, in batched calls
        world.wait_for(lambda: len(world.seen) >= 62, what="62 changes on the bus")
        stats = running.relay.stats
        wait_until(lambda: stats.total("CheckpointWrites") > 0, deadline_s=10, what="checkpoint")
    assert sorted(world.inserted_numbers()) == list(range(60))
    operations = sorted(detail["operationType"] for detail in world.details())
    assert operations.count("update") == 1
    assert operations.count("delete") == 1
    assert 999 not in world.inserted_numbers()
    assert stats.total("PutEventsRequests") < 62 / 2
    envelope = next(iter(world.seen.values()))[0]
    assert envelope["source"] == SOURCE
    # moto leaves `account` out of the envelope it delivers to SQS (AWS always sets it; see
    # test_moto_envelope_has_no_account): supplied here, in test code only.
    event = decode_event({"account": "123456789012", **envelope})
    assert event.detail.ns is not None
    assert event.detail.ns.coll == "productos"
    # AND the checkpoint holds the last change
    item = world.checkpoint(env["RELAY_ID"])
    assert item is not None
    last = max(Timestamp(d["clusterTime"]["t"], d["clusterTime"]["i"]) for d in world.details())
    assert (int(item["clusterTimeT"]["N"]), int(item["clusterTimeI"]["N"])) >= (last.time, last.inc)


def test_throttling_5xx_slow_calls_and_partial_failures_are_retried_until_all_pass(
    world, fresh_db, mongo, relay_thread, monkeypatch
):
    # GIVEN EventBridge that throttles, fails, answers slowly and fails entries, in turn
    def plan(call: int, entries: list) -> Fault | None:
        match call % 5:
            case 1:
                return Fault(status=400, error_code="ThrottlingException")
            case 2:
                return Fault(status=500, error_code="InternalException")
            case 3:
                return Fault(delay_s=1.5)  # beyond PUT_EVENTS_TIMEOUT_SECONDS: a timeout
            case 4:
                failed = {
                    0: ("ThrottlingException", "slow down"),
                    len(entries) - 1: ("InternalFailure", "oops"),
                }
                return Fault(failed_entries=failed)
        return None

    with running_proxy(world.endpoint, plan) as proxy:
        # botocore's per-service endpoint variable: only PutEvents goes through the proxy.
        monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", proxy.endpoint)
        env = relay_env(
            world,
            mongo.uri,
            fresh_db.name,
            PUT_EVENTS_TIMEOUT_SECONDS="1",
            MAX_IN_FLIGHT_REQUESTS="2",
        )
        with relay_thread(env) as running:
            # WHEN changes are written
            fresh_db.productos.insert_many([{"n": n} for n in range(40)])

            # THEN each reaches the bus; only failed entries were re-sent
            world.wait_for(lambda: len(world.inserted_numbers()) >= 40, what="40 inserts")
            stats = running.relay.stats
    assert sorted(world.inserted_numbers()) == list(range(40))
    assert proxy.injected > 0
    assert stats.total("Retries") > 0
    assert stats.total("PutEventsFailedEntries") > 0
    assert stats.total("PermanentFailures") == 0
    # A timed-out call may have reached moto before timing out: a duplicate, never a gap.
    duplicates = sum(len(envelopes) - 1 for envelopes in world.seen.values())
    assert duplicates <= 40


def test_an_entry_rejected_for_good_goes_to_the_dlq_and_the_stream_goes_on(
    world, fresh_db, mongo, relay_thread, monkeypatch
):
    # GIVEN EventBridge rejects the change with n == 7 as malformed
    def plan(_call: int, entries: list) -> Fault | None:
        failed = {
            index: ("MalformedDetail", "detail is not valid")
            for index, entry in enumerate(entries)
            if json.loads(entry["Detail"]).get("fullDocument", {}).get("n") == 7
        }
        return Fault(failed_entries=failed) if failed else None

    with running_proxy(world.endpoint, plan) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", proxy.endpoint)
        env = relay_env(world, mongo.uri, fresh_db.name)
        with relay_thread(env) as running:
            fresh_db.productos.insert_many([{"n": n} for n in range(12)])
            world.wait_for(lambda: len(world.inserted_numbers()) >= 11, what="11 inserts")
            wait_until(
                lambda: running.relay.stats.total("DeadLettered") >= 1,
                deadline_s=10,
                what="dead letter",
            )

    # THEN the others arrived, and the rejected one waits in the DLQ with its raw change and error
    assert sorted(world.inserted_numbers()) == [n for n in range(12) if n != 7]
    [letter] = world.dead_letters()
    assert letter["errorCode"] == "MalformedDetail"
    assert letter["reason"] == "detail is not valid"
    assert '"n": {"$numberInt": "7"}' in letter["event"]
    assert letter["rawEventBson"]


def test_halt_policy_exits_3_and_keeps_the_checkpoint_before_the_rejected_change(
    world, fresh_db, mongo, relay_thread, monkeypatch
):
    def plan(_call: int, entries: list) -> Fault | None:
        failed = {
            index: ("AccessDeniedException", "not allowed")
            for index, entry in enumerate(entries)
            if json.loads(entry["Detail"]).get("fullDocument", {}).get("n") == 5
        }
        return Fault(failed_entries=failed) if failed else None

    with running_proxy(world.endpoint, plan) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", proxy.endpoint)
        env = relay_env(
            world,
            mongo.uri,
            fresh_db.name,
            ON_PERMANENT_FAILURE="halt",
            MAX_IN_FLIGHT_REQUESTS="1",
            BATCH_MAX_ENTRIES="1",
        )
        with relay_thread(env) as running:
            fresh_db.productos.insert_many([{"n": n} for n in range(10)])
            code = running.wait_exit(30)

    assert code == 3
    world.collect()
    assert 5 not in world.inserted_numbers()
    assert world.dead_letters() == []
    # The checkpoint is at n == 4 at most: a restart re-reads the rejected change.
    item = world.checkpoint(env["RELAY_ID"])
    assert item is not None
    fourth = next(d for d in world.details() if d.get("fullDocument", {}).get("n") == 4)
    assert (
        int(item["orderKey"]["N"])
        <= (fourth["clusterTime"]["t"] << 32) | fourth["clusterTime"]["i"]
    )


def test_dropped_connections_and_non_resumable_errors_lose_nothing(
    world, fresh_db, mongo, mongo_client, relay_thread
):
    # GIVEN a streaming relay
    env = relay_env(world, mongo.uri, fresh_db.name)
    with relay_thread(env) as running:
        fresh_db.productos.insert_many([{"n": n} for n in range(10)])
        world.wait_for(lambda: len(world.inserted_numbers()) >= 10, what="first 10")

        # WHEN getMore loses its connection (pymongo resumes) and then fails non-resumably
        with failpoints.fail_point(
            mongo_client,
            "failCommand",
            {"times": 2},
            {"failCommands": ["getMore"], "closeConnection": True},
        ):
            fresh_db.productos.insert_many([{"n": n} for n in range(10, 20)])
            world.wait_for(lambda: len(world.inserted_numbers()) >= 20, what="20 after reconnect")
        with failpoints.fail_point(
            mongo_client,
            "failCommand",
            {"times": 1},
            {"failCommands": ["getMore"], "errorCode": 280},
        ):
            fresh_db.productos.insert_many([{"n": n} for n in range(20, 30)])
            world.wait_for(lambda: len(world.inserted_numbers()) >= 30, what="30 after reopen")
        stats = running.relay.stats

    # THEN every change arrived; the relay reopened from its own position
    assert sorted(world.inserted_numbers()) == list(range(30))
    assert stats.total("StreamReopened") >= 1


def test_a_quiet_collection_still_checkpoints_and_resumes_from_there(
    world, fresh_db, mongo, relay_thread
):
    # GIVEN a relay on a collection nobody writes, while the database is busy elsewhere
    env = relay_env(world, mongo.uri, fresh_db.name)
    with relay_thread(env):
        fresh_db.otra.insert_many([{"n": n} for n in range(20)])
        wait_until(
            lambda: world.checkpoint(env["RELAY_ID"]) is not None, deadline_s=15, what="checkpoint"
        )
        first = world.checkpoint(env["RELAY_ID"])
        assert first is not None

        # WHEN more is written elsewhere, the saved token moves on
        def moved() -> bool:
            fresh_db.otra.insert_one({"tick": 1})
            now = world.checkpoint(env["RELAY_ID"])
            return now is not None and now["resumeToken"] != first["resumeToken"]

        wait_until(moved, deadline_s=15, what="quiet checkpoint advancing")
    assert world.collect() == []

    # THEN a restart resumes from it: a change made while stopped arrives, nothing before it
    fresh_db.productos.insert_one({"n": 1})
    with relay_thread(env):
        world.wait_for(lambda: world.inserted_numbers() == [1], what="change made while stopped")


def test_drop_forwards_drop_and_invalidate_then_reopens_after_it(
    world, fresh_db, mongo, relay_thread
):
    env = relay_env(world, mongo.uri, fresh_db.name)
    fresh_db.productos.insert_one({"n": 0})
    with relay_thread(env) as running:
        fresh_db.productos.insert_one({"n": 1})
        world.wait_for(lambda: 1 in world.inserted_numbers(), what="first insert")

        # WHEN the collection is dropped and written again
        fresh_db.productos.drop()
        wait_until(
            lambda: running.relay.stats.total("Invalidated") >= 1, deadline_s=15, what="invalidate"
        )
        fresh_db.productos.insert_one({"n": 2})

        # THEN drop and invalidate reached the bus, and the new collection's change too
        world.wait_for(lambda: 2 in world.inserted_numbers(), what="insert after re-creation")
    operations = [detail["operationType"] for detail in world.details()]
    assert "drop" in operations
    assert "invalidate" in operations


def test_drop_with_on_invalidate_stop_exits_6(world, fresh_db, mongo, relay_thread):
    env = relay_env(world, mongo.uri, fresh_db.name, ON_INVALIDATE="stop")
    fresh_db.productos.insert_one({"n": 0})
    with relay_thread(env) as running:
        fresh_db.productos.drop()
        assert running.wait_exit(30) == 6
    world.wait_for(
        lambda: any(d["operationType"] == "invalidate" for d in world.details()),
        what="invalidate on the bus",
    )
    item = world.checkpoint(env["RELAY_ID"])
    assert item is not None
    assert item["startAfter"]["BOOL"] is True


def test_history_lost_fails_by_default_with_exit_4(
    world, fresh_db, mongo, mongo_client, relay_thread
):
    # GIVEN a relay whose resume point the server no longer has (fail point: works on mongod too)
    env = relay_env(world, mongo.uri, fresh_db.name)
    with relay_thread(env):
        fresh_db.productos.insert_one({"n": 1})
        world.wait_for(lambda: world.inserted_numbers() == [1], what="first insert")
    with (
        failpoints.fail_point(
            mongo_client,
            "failCommand",
            {"times": 1},
            {"failCommands": ["aggregate"], "errorCode": 286},
        ),
        relay_thread(env) as running,
    ):
        # WHEN it restarts, THEN it stops with exit code 4 and counts the loss
        assert running.wait_exit(30) == 4
        assert running.relay.stats.total("HistoryLost") == 1


def test_history_lost_with_restart_publishes_a_gap_event_and_goes_on(
    world, fresh_db, mongo, mongo_client, relay_thread
):
    env = relay_env(world, mongo.uri, fresh_db.name, ON_HISTORY_LOST="restart")
    with relay_thread(env):
        fresh_db.productos.insert_one({"n": 1})
        world.wait_for(lambda: world.inserted_numbers() == [1], what="first insert")
    lost_after = world.details()[0]["clusterTime"]

    with (
        failpoints.fail_point(
            mongo_client,
            "failCommand",
            {"times": 1},
            {"failCommands": ["aggregate"], "errorCode": 286},
        ),
        relay_thread(env) as running,
    ):
        gap_seen = []

        def gap_arrived() -> bool:
            gap_seen.extend(
                e for e in world.collect() if e["detail-type"] == "MongoDB Change Stream Gap"
            )
            return bool(gap_seen) or any(
                envelopes[0]["detail-type"] == "MongoDB Change Stream Gap"
                for envelopes in world.seen.values()
            )

        wait_until(gap_arrived, deadline_s=30, what="gap event")
        fresh_db.productos.insert_one({"n": 2})
        world.wait_for(lambda: 2 in world.inserted_numbers(), what="insert after the gap")
        assert running.relay.stats.total("GapEvents") == 1

    gap = next(
        e
        for es in world.seen.values()
        for e in es
        if e["detail-type"] == "MongoDB Change Stream Gap"
    )
    assert gap["detail"]["lostAfter"] == lost_after
    assert gap["detail"]["kind"] == "gap"
    assert gap["detail"]["scope"]["db"] == fresh_db.name


def test_history_pruned_from_the_oplog_is_reported_as_lost(world, mongo, relay_thread):
    """SecantusDB's bounded oplog makes real history loss; mongod needs hours for the same."""
    from pymongo import MongoClient

    from localdev.servers import running_secantus

    with running_secantus(oplog_max_entries=200) as small:
        client: MongoClient = MongoClient(small.uri)
        db = client.pruned
        env = relay_env(world, small.uri, "pruned", ON_HISTORY_LOST="fail")
        with relay_thread(env):
            db.productos.insert_one({"n": 1})
            world.wait_for(lambda: world.inserted_numbers() == [1], what="first insert")
        # WHEN far more than the oplog holds is written while the relay is down
        for start in range(0, 2_400, 400):
            db.productos.insert_many([{"bulk": n} for n in range(start, start + 400)])
        with relay_thread(env) as running:
            assert running.wait_exit(30) == 4
        client.close()


def test_moto_envelope_has_no_account(world, fresh_db, mongo, relay_thread):
    """moto 5.2 delivers the EventBridge envelope to SQS without `account`; AWS includes it.

    When this fails, moto has caught up and the workaround above can go.
    """
    env = relay_env(world, mongo.uri, fresh_db.name)
    with relay_thread(env):
        fresh_db.productos.insert_one({"n": 1})
        world.wait_for(lambda: world.inserted_numbers() == [1], what="one insert")
    envelope = next(iter(world.seen.values()))[0]
    assert "account" not in envelope
    assert {"id", "time", "detail-type", "source", "region", "detail"} <= set(envelope)


def test_mongodb_checkpoint_store_inside_the_watched_database(world, fresh_db, mongo, relay_thread):
    # GIVEN a whole-database watch whose checkpoints live in a collection of that database
    env = relay_env(
        world,
        mongo.uri,
        fresh_db.name,
        collections="",
        CHECKPOINT_STORE="mongodb",
        CHECKPOINT_DATABASE=fresh_db.name,
        CHECKPOINT_COLLECTION="relay_checkpoints",
    )
    with relay_thread(env):
        fresh_db.productos.insert_many([{"n": n} for n in range(5)])
        world.wait_for(lambda: len(world.inserted_numbers()) >= 5, what="5 inserts")
        wait_until(
            lambda: fresh_db.relay_checkpoints.find_one({"_id": env["RELAY_ID"]}) is not None,
            deadline_s=10,
            what="checkpoint document",
        )
        fresh_db.pedidos.insert_one({"n": 5})
        world.wait_for(lambda: len(world.inserted_numbers()) >= 6, what="6 inserts")

    # THEN checkpoint writes were never forwarded as changes, and a restart resumes after them
    assert all(d["ns"]["coll"] != "relay_checkpoints" for d in world.details())
    fresh_db.productos.insert_one({"n": 6})
    with relay_thread(env):
        world.wait_for(lambda: 6 in world.inserted_numbers(), what="change made while stopped")
    assert sorted(world.inserted_numbers()) == list(range(7))
    assert all(len(envelopes) == 1 for envelopes in world.seen.values())


def test_several_collections_of_a_database_are_watched_and_others_are_not(
    world, fresh_db, mongo, relay_thread
):
    env = relay_env(world, mongo.uri, fresh_db.name, collections="productos,pedidos")
    with relay_thread(env):
        fresh_db.productos.insert_one({"n": 1})
        fresh_db.otra.insert_one({"n": 2})
        fresh_db.pedidos.insert_one({"n": 3})
        world.wait_for(lambda: len(world.inserted_numbers()) >= 2, what="2 inserts")
    assert sorted(world.inserted_numbers()) == [1, 3]
    assert {d["ns"]["coll"] for d in world.details()} == {"productos", "pedidos"}


def test_a_deployment_watch_with_watch_match_sees_only_what_matches(
    world, fresh_db, mongo, mongo_client, relay_thread
):
    # GIVEN a whole-deployment watch narrowed by WATCH_MATCH to this test's database
    match = json.dumps({"ns.db": fresh_db.name, "operationType": "insert"})
    env = relay_env(world, mongo.uri, "", collections="", WATCH_MATCH=match)
    env["RELAY_ID"] = f"deployment-{fresh_db.name}"
    other = mongo_client[f"{fresh_db.name}_other"]
    try:
        with relay_thread(env):
            fresh_db.productos.insert_one({"n": 1})
            fresh_db.productos.update_one({"n": 1}, {"$set": {"cantidad": 3}})
            other.productos.insert_one({"n": 2})
            fresh_db.pedidos.insert_one({"n": 3})
            world.wait_for(lambda: len(world.inserted_numbers()) >= 2, what="2 inserts")
    finally:
        mongo_client.drop_database(other.name)
    assert sorted(world.inserted_numbers()) == [1, 3]
    assert {d["operationType"] for d in world.details()} == {"insert"}

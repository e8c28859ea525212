"""Backfill parts that need no server: rate limit, resume filters, progress state and its stores."""

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import boto3
import mongomock
import pytest
from bson import Int64, MaxKey, MinKey, ObjectId, Timestamp
from bson.raw_bson import RawBSONDocument
from moto import mock_aws
from pymongo.errors import ExecutionTimeout

from change_contract.ejson import CODEC_OPTIONS
from relay.backfill import (
    COUNT_MAX_TIME_MS,
    Backfill,
    BackfillError,
    BackfillOptions,
    BackfillState,
    DynamoDBProgressStore,
    RateLimiter,
    after_filter,
    main,
    namespace_query,
    options_from,
    parser,
    type_rank,
)
from relay.checkpoint import Position, token_bytes
from relay.progress import Progress, ProgressReporter, format_duration
from relay.settings import RelaySettings
from relay.telemetry import check_health
from tests.unit.relay.helpers import RELAY_ENV, FakeEvents, create_checkpoint_table

SNAPSHOT = Position(
    RawBSONDocument(token_bytes({"_data": "82abc"}), CODEC_OPTIONS), Timestamp(1_796_300_000, 3)
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.waited = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        self.waited += seconds
        return False


def test_rate_limiter_paces_to_the_rate_on_average():
    # GIVEN a limit of 50 per second and a caller that takes no time
    clock = FakeClock()
    limiter = RateLimiter(50, clock=clock, wait=clock.wait)

    # WHEN 501 slots are taken
    for _ in range(501):
        assert limiter.acquire()

    # THEN 500 intervals of 20 ms passed, not less
    assert clock.now - 100.0 == pytest.approx(10.0, abs=0.01)


def test_rate_limiter_does_not_bank_idle_time_into_a_burst():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, wait=clock.wait)
    limiter.acquire()
    clock.now += 60  # idle for a minute
    started = clock.now
    for _ in range(11):
        limiter.acquire()
    assert clock.now - started == pytest.approx(1.0, abs=0.01)


def test_rate_limiter_stops_waiting_when_told_to_stop():
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock, wait=lambda seconds: True)
    assert limiter.acquire()
    assert not limiter.acquire()


def test_no_rate_means_no_waiting():
    limiter = RateLimiter(None, wait=lambda seconds: pytest.fail("must not wait"))
    assert all(limiter.acquire() for _ in range(1000))


@pytest.mark.parametrize(
    ("value", "rank"),
    [
        (MinKey(), 0),
        (None, 1),
        (5, 2),
        (Int64(5), 2),
        (2.5, 2),
        ("a", 3),
        ({"a": 1}, 4),
        (b"x", 5),
        (ObjectId(), 6),
        (True, 7),
        (Timestamp(1, 1), 9),
        (MaxKey(), 11),
    ],
)
def test_type_rank_follows_bson_comparison_order(value, rank):
    assert type_rank(value) == rank


def test_after_a_number_also_takes_every_later_type():
    query = after_filter(19)
    assert query["$or"][0] == {"_id": {"$gt": 19}}
    later = query["$or"][1]["_id"]["$type"]
    assert {"string", "objectId", "date"} <= set(later)
    assert not {"double", "null"} & set(later)


def test_after_the_last_type_or_an_unknown_one_is_a_plain_gt():
    assert after_filter(MaxKey()) == {"_id": {"$gt": MaxKey()}}
    assert after_filter(object) == {"_id": {"$gt": object}}


def test_namespace_query_combines_filter_and_resume_point():
    from relay.backfill import _START

    assert namespace_query(None, _START) == {}
    assert namespace_query({"cantidad": {"$lt": 5}}, _START) == {"cantidad": {"$lt": 5}}
    oid = ObjectId()
    combined = namespace_query({"a": 1}, oid)
    assert combined["$and"][0] == {"a": 1}
    assert combined["$and"][1]["$or"][0] == {"_id": {"$gt": oid}}


def state(**fields) -> BackfillState:
    return BackfillState(
        snapshot=SNAPSHOT, namespaces=[("clase", "productos"), ("clase", "otros")], query="{}",
        **fields,
    )  # fmt: skip


def test_state_round_trips_through_bson():
    oid = ObjectId()
    original = state(last={"db": "clase", "coll": "productos", "lastId": oid}, sent=42)
    copy = BackfillState.from_bson(original.to_bson())
    assert copy.snapshot.cluster_time == SNAPSHOT.cluster_time
    assert token_bytes(copy.snapshot.token) == token_bytes(SNAPSHOT.token)
    assert copy.namespaces == original.namespaces
    assert copy.last == {"db": "clase", "coll": "productos", "lastId": oid}
    assert (copy.sent, copy.status, copy.run_id) == (42, "running", original.run_id)


def test_remaining_starts_at_the_top_then_after_the_last_id_then_after_done_collections():
    from relay.backfill import _START

    assert state().remaining() == [(("clase", "productos"), _START), (("clase", "otros"), _START)]
    mid = state(last={"db": "clase", "coll": "productos", "lastId": 7}).remaining()
    assert mid == [(("clase", "productos"), 7), (("clase", "otros"), _START)]
    done = state(last={"db": "clase", "coll": "productos", "done": True}).remaining()
    assert done == [(("clase", "otros"), _START)]
    assert state(last={"db": "clase", "coll": "otros", "done": True}).remaining() == []
    with pytest.raises(BackfillError, match="not being backfilled"):
        state(last={"db": "clase", "coll": "gone", "lastId": 1}).remaining()


def test_dynamodb_progress_store_saves_and_loads_beside_the_checkpoint():
    with mock_aws():
        client = boto3.client("dynamodb")
        create_checkpoint_table(client, "checkpoints")
        store = DynamoDBProgressStore(client, "checkpoints", "relay-1")
        assert store.load() is None
        store.save(state(sent=3, status="complete"))
        loaded = store.load()
        item = client.get_item(TableName="checkpoints", Key={"relayId": {"S": "relay-1#backfill"}})
    assert loaded is not None
    assert (loaded.sent, loaded.status) == (3, "complete")
    assert item["Item"]["status"] == {"S": "complete"}


def arguments(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_options_parse_filter_as_extended_json_and_validate():
    options = options_from(
        arguments("--filter", '{"_id": {"$oid": "6750a1f0c2b4a1e0f0a1b001"}}', "--rate", "50")
    )
    assert options.query == {"_id": ObjectId("6750a1f0c2b4a1e0f0a1b001")}
    assert options.rate_per_second == 50
    assert json.loads(options.query_json()) == {"_id": {"$oid": "6750a1f0c2b4a1e0f0a1b001"}}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--filter", "{nope"], "--filter is not valid Extended JSON"),
        (["--filter", "[1]"], "--filter must be a JSON object"),
        (["--rate", "0"], "--rate must be a positive"),
        (["--collections", "a,a"], "--collections lists a collection twice"),
        (["--batch-size", "0"], "--batch-size must be between"),
    ],
)
def test_bad_options_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        options_from(arguments(*argv))


def test_main_reports_a_missing_variable_and_exits_2(capsys):
    assert main([], env={"MONGODB_URI": "mongodb://127.0.0.1:1/"}) == 2
    assert "configuration error: WATCH_DATABASE" in capsys.readouterr().err


def test_progress_log_mode_writes_a_structured_line(monkeypatch):
    # GIVEN 200 documents acknowledged in 4 s by this run, after 100 by an earlier one
    clock = iter([0.0, 4.0])
    progress = Progress(
        lambda: 200, 1000, what="documents", already_done=100, clock=lambda: next(clock)
    )
    logged: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "relay.progress.logger.info", lambda message, **fields: logged.append((message, fields))
    )

    # WHEN rendered where there is no terminal
    ProgressReporter(progress, mode="log", stream=io.StringIO()).render()

    # THEN one fixed message with the numbers as fields (rate counts this run only)
    message, fields = logged[0]
    assert message == "progress"
    assert fields == {
        "what": "documents", "done": 300, "total": 1000, "rate_per_s": 50.0, "eta_s": 14,
    }  # fmt: skip


def test_format_duration():
    assert format_duration(None) == "?"
    assert format_duration(5) == "0:05"
    assert format_duration(3725) == "1:02:05"


def test_relay_cli_dispatches_backfill_and_replay_with_their_options(capsys):
    from relay.cli import main as relay_main

    assert relay_main(["backfill", "--rate", "5"], env={}) == 2
    assert "configuration error: MONGODB_URI" in capsys.readouterr().err
    assert relay_main(["replay", "--from", "now-1h", "--to", "now"], env={}) == 2
    assert "EVENT_BUS_NAME (or --bus) is required" in capsys.readouterr().err


def test_status_prints_the_stored_progress_without_documents(capsys):
    from relay.backfill import print_status

    oid = ObjectId("6750a1f0c2b4a1e0f0a1b001")
    with mock_aws():
        client = boto3.client("dynamodb")
        create_checkpoint_table(client, "checkpoints")
        store = DynamoDBProgressStore(client, "checkpoints", "relay-1")
        assert print_status(store) == 0
        assert json.loads(capsys.readouterr().out)["backfill"] is None
        store.save(state(last={"db": "clase", "coll": "productos", "lastId": oid}, sent=7))
        assert print_status(store) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "running"
    assert printed["documentsSent"] == 7
    assert printed["namespaces"] == ["clase.productos", "clase.otros"]
    assert printed["lastAcknowledged"]["lastId"] == {"$oid": str(oid)}
    assert printed["snapshotTime"] == {"t": 1_796_300_000, "i": 3}
    assert printed["store"] == "dynamodb://checkpoints/relay-1#backfill"


class RecordingProgress:
    def __init__(self) -> None:
        self.saved: list[int] = []

    def load(self) -> None:
        return None

    def save(self, saved: BackfillState) -> None:
        self.saved.append(saved.sent)

    def describe(self) -> str:
        return "memory"


class StubForwarder:
    """What `_save` and the health writer read of the forwarder."""

    def __init__(self, last_id: int) -> None:
        self.watermark = read_mark(last_id)
        self.last_activity = time.monotonic()


def read_mark(last_id: int) -> Position:
    return Position({"db": "clase", "coll": "productos", "lastId": last_id}, SNAPSHOT.cluster_time)


@pytest.fixture
def start_up_backfill(tmp_path):
    """A start-up mode backfill with the lease on, on in-process stand-ins (no server)."""
    env = {
        **RELAY_ENV,
        "LEASE_ENABLED": "true",
        "HEALTH_FILE": str(tmp_path / "health.json"),
        "HEALTH_MAX_AGE_SECONDS": "10",
    }

    def build(**options: Any) -> Backfill:
        return Backfill(
            RelaySettings.from_env(env),
            BackfillOptions(then_run=True, progress="off", **options),
            mongo=mongomock.MongoClient(),
            events=FakeEvents(),
            dynamodb=dynamodb,
            progress_store=RecordingProgress(),
        )

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_checkpoint_table(dynamodb, "relay-checkpoints")
        yield build


def test_a_deposed_start_up_backfill_leaves_the_progress_to_the_new_leader(start_up_backfill):
    # GIVEN a start-up backfill that has saved its progress once
    backfill = start_up_backfill()
    progress = backfill.progress_store
    backfill._state = state()
    backfill.forwarder = StubForwarder(last_id=1)
    backfill._save()
    assert progress.saved == [0]

    # WHEN more is acknowledged but the lease was lost meanwhile
    backfill.forwarder.watermark = read_mark(2)
    backfill._lease.lost.set()
    backfill._save()

    # THEN nothing more is written: the new leader's progress is its own
    assert progress.saved == [0]


def health_state(backfill: Backfill) -> str:
    return json.loads(Path(backfill.settings.health_file).read_text())["state"]


def test_start_up_health_says_backfilling_then_stalled_when_nothing_moves(start_up_backfill):
    # GIVEN a start-up backfill reading, its forwarder answered just now
    backfill = start_up_backfill()
    backfill._health_state = "backfilling"
    backfill.forwarder = StubForwarder(last_id=1)
    backfill._write_health()
    assert health_state(backfill) == "backfilling"
    assert check_health(backfill.settings.health_file, max_age_s=10)[0]

    # WHEN neither a read nor an answer happened for longer than HEALTH_MAX_AGE_SECONDS
    backfill.forwarder.last_activity = backfill._heartbeat = time.monotonic() - 11

    # THEN it reports stalled, which the container health check fails
    backfill._write_health()
    assert health_state(backfill) == "stalled"
    assert not check_health(backfill.settings.health_file, max_age_s=10)[0]


def test_a_paced_start_up_backfill_may_wait_one_interval_before_it_is_stalled(start_up_backfill):
    # GIVEN one document every 20 s (--rate 0.05) and a 10 s health age
    backfill = start_up_backfill(rate_per_second=0.05)
    backfill._health_state = "backfilling"
    backfill.forwarder = StubForwarder(last_id=1)

    # WHEN the last read was 25 s ago, it is still waiting its turn
    backfill.forwarder.last_activity = backfill._heartbeat = time.monotonic() - 25
    backfill._write_health()
    assert health_state(backfill) == "backfilling"

    # WHEN it was 31 s ago, it is stalled
    backfill.forwarder.last_activity = backfill._heartbeat = time.monotonic() - 31
    backfill._write_health()
    assert health_state(backfill) == "stalled"


def test_a_standby_start_up_task_is_healthy(start_up_backfill):
    backfill = start_up_backfill()
    backfill._health_state = "standby"
    backfill._heartbeat = time.monotonic() - 100  # waiting for the lease is not a stall

    backfill._write_health()

    assert health_state(backfill) == "standby"
    assert check_health(backfill.settings.health_file, max_age_s=10)[0]


def test_the_filtered_count_for_the_eta_is_bounded_and_its_timeout_only_drops_the_eta(
    start_up_backfill, monkeypatch
):
    # GIVEN a filtered backfill over a collection whose count the server cuts off
    asked: list[dict[str, Any]] = []

    def count_documents(self, filter, **options):
        asked.append(options)
        raise ExecutionTimeout("operation exceeded time limit", 50)

    monkeypatch.setattr(mongomock.Collection, "count_documents", count_documents)
    backfill = start_up_backfill(query={"categoria": "panadería"})

    # WHEN the total is counted for the progress
    total = backfill._count_total(state())

    # THEN the count was bounded, and its timeout leaves only the ETA out
    assert asked == [{"maxTimeMS": COUNT_MAX_TIME_MS}]
    assert total is None

"""The sink's bookkeeping: entries counted, commit latencies read from each Detail, bad requests
named. The HTTP side: without a socket in test_sink_protocol.py, over loopback in
tests/integration/bench."""

import datetime as dt
import json
import os

import pytest
from bson import json_util

from bench.sink import SinkState, _details_of, process_cpu_seconds, wall_time_of
from change_contract import encode_change
from localdev.samples import LECHE, change, product

WALL = dt.datetime(2026, 12, 3, 12, 0, 0, 250_000, tzinfo=dt.UTC)


def _change() -> dict:
    event = change("insert", 1, document_id=LECHE, fullDocument=product(LECHE, "Leche", 5))
    event["wallTime"] = WALL
    return event


@pytest.mark.parametrize("fast", [True, False])
def test_wall_time_is_read_from_the_contract_encoding(fast):
    detail = encode_change(_change(), fast=fast).entry["Detail"]

    assert wall_time_of(detail) == WALL.timestamp()


def test_wall_time_is_read_from_the_naive_json_util_encoding():
    assert wall_time_of(json_util.dumps(_change())) == WALL.timestamp()


def test_a_detail_without_wall_time_has_none():
    assert wall_time_of('{"operationType": "insert"}') is None


def test_record_counts_entries_requests_and_latencies():
    # GIVEN a state armed for latencies and two requests of 3 and 2 entries, committed at WALL
    state = SinkState(latency_since=0.0)
    detail = encode_change(_change()).entry["Detail"]
    arrival = WALL.timestamp() + 0.5

    # WHEN both are recorded
    state.record(arrival, [detail] * 3)
    state.record(arrival + 1, [detail] * 2)

    # THEN the counters and latencies say so
    snapshot = state.snapshot()
    assert (snapshot["requests"], snapshot["entries"]) == (2, 5)
    assert snapshot["first_request_entries"] == 3
    assert snapshot["first_arrival"] == arrival
    assert snapshot["last_arrival"] == arrival + 1
    assert snapshot["latencies_s"] == pytest.approx([0.5] * 3 + [1.5] * 2)
    assert snapshot["cpu_samples"] == []


def test_a_throughput_run_counts_entries_without_reading_any_detail():
    # GIVEN a state armed without a latency window, and details that are not even JSON
    state = SinkState()

    # WHEN a request is recorded
    state.record(WALL.timestamp(), ["not json", "{"])

    # THEN its entries are counted and no latency is kept
    snapshot = state.snapshot()
    assert (snapshot["requests"], snapshot["entries"], snapshot["latencies_s"]) == (1, 2, [])


def test_cpu_is_sampled_at_the_first_request_and_when_the_target_is_crossed():
    state = SinkState(watch_pid=os.getpid(), target_entries=4)

    state.record(100.0, ["{}"])
    state.record(100.001, ["{}", "{}"])  # too soon for a periodic sample
    state.record(100.002, ["{}", "{}"])  # crosses the target

    samples = state.snapshot()["cpu_samples"]
    assert [sample["entries"] for sample in samples] == [1, 5]
    assert samples[1]["cpu_s"] >= samples[0]["cpu_s"] >= 0


def test_cpu_of_a_missing_process_is_none():
    assert process_cpu_seconds(2**22 + 12345) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b'{"Entries": []}', "1 to 10 entries"),
        (json.dumps({"Entries": [{}] * 11}).encode(), "1 to 10 entries"),
        (b'{"Entries": [{"Source": "s", "DetailType": "d"}]}', "entry 0 needs"),
    ],
)
def test_bad_put_events_bodies_are_named(body, problem):
    details = _details_of(body)

    assert isinstance(details, str)
    assert problem in details


def test_a_good_body_gives_every_detail():
    entry = {"Source": "s", "DetailType": "d", "Detail": '{"a": 1}'}

    assert _details_of(json.dumps({"Entries": [entry, entry]}).encode()) == ['{"a": 1}'] * 2

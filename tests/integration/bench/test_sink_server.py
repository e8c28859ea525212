"""The PutEvents sink speaks EventBridge's protocol to boto3, counts what it gets, and refuses
what is not PutEvents."""

import os
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.sink import RunningSink, start_sink
from tests.integration.raw_http import connect, put_events_request, read_answer

ENTRY = {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "b"}


@pytest.fixture(scope="module")
def sink() -> Iterator[RunningSink]:
    running = start_sink()
    try:
        yield running
    finally:
        running.stop()


def _events(endpoint: str):
    return boto3.client(
        "events",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_put_events_succeeds_for_every_entry_and_is_counted(sink):
    # GIVEN an armed sink watching this process
    sink.client.arm(latency_ms=0, watch_pid=os.getpid(), target=3, latency_since=0.0)
    entry = {
        "Source": "mongodb.changestream",
        "DetailType": "MongoDB Change Event",
        "Detail": '{"wallTime": {"$date": "2026-12-03T12:00:00.000Z"}}',
        "EventBusName": "bench-bus",
    }

    # WHEN boto3 sends two requests
    first = _events(sink.client.endpoint).put_events(Entries=[entry, entry])
    _events(sink.client.endpoint).put_events(Entries=[entry])

    # THEN every entry succeeded and the sink counted them, with latencies and CPU samples
    assert first["FailedEntryCount"] == 0
    assert len({item["EventId"] for item in first["Entries"]}) == 2
    stats = sink.client.stats()
    assert (stats["requests"], stats["entries"], stats["rejected"]) == (2, 3, 0)
    assert len(stats["latencies_s"]) == 3
    assert stats["cpu_samples"][-1]["entries"] == 3


def test_added_latency_is_kept_per_run_and_arming_resets_counters(sink):
    sink.client.arm(latency_ms=25)

    stats = sink.client.stats()

    assert stats["latency_ms"] == 25
    assert stats["entries"] == 0


def test_a_call_other_than_put_events_is_refused_by_name(sink):
    sink.client.arm(latency_ms=0)

    with pytest.raises(ClientError) as raised:
        _events(sink.client.endpoint).list_rules()

    assert raised.value.response["Error"]["Code"] == "UnknownOperationException"
    assert "AWSEvents.ListRules" in raised.value.response["Error"]["Message"]
    assert sink.client.stats()["rejected"] == 1


def test_one_connection_carries_several_calls_until_the_client_asks_to_close(sink):
    sink.client.arm(latency_ms=0)

    with connect(sink.client.endpoint) as conn:
        conn.sendall(put_events_request())
        first = read_answer(conn)
        conn.sendall(put_events_request("Connection: close"))
        second = read_answer(conn)
        closed = conn.recv(1)

    assert first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 200")
    assert closed == b""
    assert sink.client.stats()["entries"] == 2


def test_a_request_the_sink_cannot_read_is_answered_400_and_the_connection_ends(sink):
    with connect(sink.client.endpoint) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        answer = read_answer(conn)
        closed = conn.recv(1)

    assert answer.startswith(b"HTTP/1.1 400")
    assert b"chunked" in answer
    assert closed == b""


def test_the_added_latency_holds_put_events_back_but_not_the_stats(sink):
    # GIVEN a sink armed with 1 s per call
    sink.client.arm(latency_ms=1000)
    client = _events(sink.client.endpoint)

    # WHEN a call is made, and the stats are read while another call waits
    started = time.monotonic()
    client.put_events(Entries=[ENTRY])
    held_s = time.monotonic() - started
    with connect(sink.client.endpoint) as waiting:
        waiting.sendall(put_events_request())
        requests = sink.client.stats()["requests"]
        waiting.setblocking(False)
        with pytest.raises(BlockingIOError):
            waiting.recv(1)
        waiting.setblocking(True)
        answer = read_answer(waiting)

    # THEN the call took at least the latency; the stats came back (the waiting call already
    # counted) while the other call's answer was still held back
    assert held_s >= 1.0
    assert requests == 2
    assert answer.startswith(b"HTTP/1.1 200")


def test_the_sink_process_is_gone_after_stop():
    running = start_sink()
    pid = running.process.process.pid

    running.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

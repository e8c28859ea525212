"""The PutEvents sink speaks EventBridge's protocol to boto3, counts what it gets, and refuses
what is not PutEvents."""

import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.sink import RunningSink, start_sink


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


def test_the_sink_process_is_gone_after_stop():
    running = start_sink()
    pid = running.process.process.pid

    running.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

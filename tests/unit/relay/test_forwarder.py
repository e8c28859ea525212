"""The forwarding pipeline: batching, partial failures, dead letters, halting, the watermark."""

import threading
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from relay.checkpoint import Position
from relay.encoder import ChangeEncoder
from relay.forwarder import Forwarder, ForwarderOptions, Item, full_jitter_delay
from relay.telemetry import Stats
from tests.unit.relay.helpers import (
    AsyncFakeEvents,
    FakeEvents,
    RecordingDeadLetters,
    accept_all,
    client_error,
    held_answer,
    raw_change,
)

FAST = ForwarderOptions(retry_base_s=0.001, retry_max_s=0.005, max_in_flight=4)


@pytest.fixture(params=[FakeEvents, AsyncFakeEvents], ids=["blocking client", "asyncio client"])
def events_type(request) -> type[FakeEvents]:
    """Every test runs with a botocore-like client (sent from worker threads) and a client with
    `put_events_async` (sent on the forwarder's loop), the lean client's way."""
    return request.param


def encode_all(count: int, stats: Stats, **encoder_options: Any) -> list[Item]:
    encoder = ChangeEncoder(
        bus_name="bus", source="src", max_entry_bytes=1_048_576, stats=stats, **encoder_options
    )
    return [encoder.encode(raw_change(seq)) for seq in range(count)]


def forward(items: list[Item], events: FakeEvents, options: ForwarderOptions = FAST, dead=None):
    stats = Stats()
    forwarder = Forwarder(events, dead or RecordingDeadLetters(), stats, options)
    for item in items:
        forwarder.add(item)
    drained = forwarder.drain(10)
    forwarder.close()
    return forwarder, stats, drained


def test_entries_go_in_batches_of_ten_and_the_watermark_reaches_the_last(events_type):
    items = encode_all(25, Stats())
    events = events_type()

    forwarder, stats, drained = forward(items, events)

    assert drained
    assert sorted(len(call) for call in events.calls) == [5, 10, 10]
    assert forwarder.watermark is not None
    assert forwarder.watermark.token == items[-1].token
    assert stats.total("EventsForwarded") == 25
    assert stats.total("PutEventsRequests") == 3


def test_a_batch_never_exceeds_the_request_byte_limit(events_type):
    items = encode_all(10, Stats())
    limit = items[0].size * 3 + 1  # room for three entries

    events = events_type()
    forward(items, events, ForwarderOptions(max_request_bytes=limit, retry_base_s=0.001))

    assert [len(call) for call in sorted(events.calls, key=len, reverse=True)][:1] == [3]
    assert sum(len(call) for call in events.calls) == 10
    assert all(sum(item.size for item in items[: len(call)]) <= limit for call in events.calls)


def test_only_failed_entries_are_retried_until_they_pass(events_type):
    # GIVEN EventBridge throttles entries 2 and 5, then fails entry 2 once more internally
    items = encode_all(8, Stats())

    def partial(failing: set[int], code: str):
        def respond(entries):
            return {
                "FailedEntryCount": len(failing),
                "Entries": [
                    {"ErrorCode": code, "ErrorMessage": "no"}
                    if index in failing
                    else {"EventId": "x"}
                    for index in range(len(entries))
                ],
            }

        return respond

    events = events_type([partial({2, 5}, "ThrottlingException"), partial({0}, "InternalFailure")])

    # WHEN the batch is forwarded
    forwarder, stats, drained = forward(items, events)

    # THEN the retries carried only the failed entries, and everything was accepted once
    assert drained
    assert [len(call) for call in events.calls] == [8, 2, 1]
    assert events.calls[1] == [items[2].entry, items[5].entry]
    assert events.calls[2] == [items[2].entry]
    assert stats.total("Retries") == 3
    assert stats.total("PutEventsFailedEntries") == 3
    assert stats.total("EventsForwarded") == 8
    assert forwarder.watermark.token == items[-1].token


@pytest.mark.parametrize(
    "failure",
    [
        client_error("ThrottlingException"),
        client_error("InternalException", status=500),
        client_error("ServiceUnavailable", status=503),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
    ids=["throttled", "500", "503", "timeout"],
)
def test_whole_request_failures_are_retried(failure, events_type):
    items = encode_all(3, Stats())
    events = events_type([failure, failure])

    _forwarder, stats, drained = forward(items, events)

    assert drained
    assert len(events.calls) == 3
    assert stats.total("Retries") == 6
    assert stats.total("EventsForwarded") == 3


def test_entries_rejected_for_good_are_dead_lettered_and_the_stream_goes_on(events_type):
    items = encode_all(4, Stats())

    def reject_second(entries):
        results = [{"EventId": "x"} for _ in entries]
        results[1] = {"ErrorCode": "MalformedDetail", "ErrorMessage": "bad json"}
        return {"FailedEntryCount": 1, "Entries": results}

    dead = RecordingDeadLetters()
    forwarder, stats, drained = forward(items, events_type([reject_second]), dead=dead)

    assert drained
    assert [letter.event_id for letter in dead.letters] == [items[1].event_id]
    assert dead.letters[0].error_code == "MalformedDetail"
    assert dead.letters[0].change is items[1].change
    assert stats.total("PermanentFailures") == 1
    assert stats.total("EventsForwarded") == 3
    assert forwarder.watermark.token == items[-1].token


def test_a_request_refused_for_good_dead_letters_its_entries(events_type):
    items = encode_all(2, Stats())
    dead = RecordingDeadLetters()

    forward(items, events_type([client_error("AccessDeniedException")]), dead=dead)

    assert [letter.error_code for letter in dead.letters] == ["AccessDeniedException"] * 2


def test_halt_policy_stops_and_keeps_the_watermark_before_the_rejected_change(events_type):
    items = encode_all(25, Stats())

    def reject_in_second_batch(entries):
        results = [{"EventId": "x"} for _ in entries]
        if entries[0] == items[10].entry:
            results[3] = {"ErrorCode": "InvalidArgument", "ErrorMessage": "no"}
        return {"FailedEntryCount": 0 if entries[0] != items[10].entry else 1, "Entries": results}

    events = events_type([reject_in_second_batch] * 3)
    options = ForwarderOptions(halt_on_permanent_failure=True, max_in_flight=1)

    forwarder, _stats, drained = forward(items, events, options)

    assert not drained
    assert forwarder.halt_error is not None
    assert items[13].event_id in str(forwarder.halt_error)
    assert forwarder.watermark.token == items[9].token


def test_the_watermark_waits_for_an_earlier_batch_still_in_flight(events_type):
    # GIVEN the first batch's call is held while the second completes
    items = encode_all(20, Stats())
    release_first = threading.Event()
    first_started = threading.Event()
    events = events_type([held_answer(release_first, first_started)])
    forwarder = Forwarder(events, RecordingDeadLetters(), Stats(), FAST)
    for item in items:
        forwarder.add(item)
    first_started.wait(5)

    # WHEN the second batch is done but the first is not
    deadline = threading.Event()
    while len(events.calls) < 2 and not deadline.wait(0.01):
        pass
    deadline.wait(0.1)

    # THEN the watermark has not moved; once the first is done it jumps to the end
    assert forwarder.watermark is None
    assert forwarder.in_flight == 1
    release_first.set()
    assert forwarder.drain(5)
    mark = forwarder.watermark
    assert mark is not None
    assert mark.token == items[-1].token
    forwarder.close()


def test_calls_in_flight_are_bounded_and_a_full_reader_waits_until_half_the_places_free(
    events_type,
):
    # GIVEN at most 2 calls in flight (so 4 batches handed to the senders), every call held
    options = ForwarderOptions(retry_base_s=0.001, retry_max_s=0.005, max_in_flight=2)
    gate = threading.Semaphore(0)
    lock = threading.Lock()
    running = peak = 0

    def held(entries):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.acquire(timeout=10)
        with lock:
            running -= 1
        return accept_all(entries)

    events = events_type([held] * 6)
    forwarder = Forwarder(events, RecordingDeadLetters(), Stats(), options)
    items = encode_all(60, Stats())
    reader_done = threading.Event()

    def read() -> None:
        for item in items:
            forwarder.add(item)
        reader_done.set()

    def wait_for(check, what: str) -> None:
        deadline = threading.Event()
        for _ in range(500):
            if check():
                return
            deadline.wait(0.01)
        raise AssertionError(f"{what} not reached")

    # WHEN a reader adds 6 batches
    threading.Thread(target=read, daemon=True).start()

    # THEN 2 are sent, 2 wait for a sender, and the 5th waits in the reader
    wait_for(lambda: len(events.calls) == 2 and forwarder.in_flight == 5, "4 handed, 1 waiting")
    assert not reader_done.is_set()

    # WHEN one call ends: a waiting batch is sent, but 3 of 4 places are still taken
    gate.release()
    wait_for(lambda: len(events.calls) == 3, "the third call")

    # THEN the reader still waits (bounded wait for something that must not happen)
    assert not reader_done.wait(0.2)
    assert forwarder.in_flight == 4

    # WHEN a second call ends, half the places are free: the reader goes on and everything drains
    for _ in range(6):
        gate.release()
    assert reader_done.wait(5)
    assert forwarder.drain(5)
    forwarder.close()
    assert peak == 2
    assert len(events.accepted_details()) == 60


def test_a_quiet_position_waits_for_what_was_queued_before_it(events_type):
    items = encode_all(3, Stats())
    release = threading.Event()
    forwarder = Forwarder(
        events_type([held_answer(release)]), RecordingDeadLetters(), Stats(), FAST
    )
    for item in items:
        forwarder.add(item)
    quiet = Position({"_data": "quiet"}, None)

    forwarder.add_position(quiet)

    assert forwarder.watermark is None
    release.set()
    assert forwarder.drain(5)
    assert forwarder.watermark is quiet
    forwarder.close()


def test_a_quiet_position_with_nothing_pending_is_the_watermark_at_once(events_type):
    forwarder = Forwarder(events_type(), RecordingDeadLetters(), Stats(), FAST)
    quiet = Position({"_data": "quiet"}, None)

    forwarder.add_position(quiet)

    assert forwarder.watermark is quiet
    forwarder.close()


def test_abort_leaves_a_failing_batch_undone(events_type):
    items = encode_all(2, Stats())
    events = events_type([client_error("ThrottlingException")] * 1000)
    options = ForwarderOptions(retry_base_s=0.01, retry_max_s=0.02)
    forwarder = Forwarder(events, RecordingDeadLetters(), Stats(), options)
    for item in items:
        forwarder.add(item)

    assert not forwarder.drain(0.2)
    forwarder.close()

    assert forwarder.watermark is None


def test_closing_during_a_long_retry_wait_ends_the_wait_at_once(events_type, monkeypatch):
    # GIVEN a batch throttled once, whose retry would wait 60 s
    monkeypatch.setattr("relay.forwarder.full_jitter_delay", lambda *_: 60.0)
    events = events_type([client_error("ThrottlingException")])
    forwarder = Forwarder(events, RecordingDeadLetters(), Stats(), FAST)
    forwarder.add(encode_all(1, Stats())[0])
    assert not forwarder.drain(0.2)

    # WHEN the forwarder is closed from another thread
    closer = threading.Thread(target=forwarder.close)
    closer.start()

    # THEN close returns long before the wait would have ended, the batch left undone
    closer.join(timeout=10)
    assert not closer.is_alive()
    assert len(events.calls) == 1
    assert forwarder.watermark is None


def test_batches_waiting_for_a_place_are_never_sent_after_an_abort(events_type):
    # GIVEN one call in flight, held, and a second batch waiting for its place
    release = threading.Event()
    started = threading.Event()
    options = ForwarderOptions(retry_base_s=0.001, retry_max_s=0.005, max_in_flight=1)
    events = events_type([held_answer(release, started)])
    forwarder = Forwarder(events, RecordingDeadLetters(), Stats(), options)
    for item in encode_all(20, Stats()):
        forwarder.add(item)
    assert started.wait(5)

    # WHEN the forwarder is aborted and closed while the call is held, and the call then ends
    forwarder.abort()
    closer = threading.Thread(target=forwarder.close)
    closer.start()
    release.set()
    closer.join(timeout=10)

    # THEN the held call completed its batch, and the waiting one was never sent
    assert not closer.is_alive()
    assert len(events.calls) == 1
    assert forwarder.in_flight == 1
    if isinstance(events, AsyncFakeEvents):
        assert events.closed  # the client's connections were closed on the loop


def test_full_jitter_stays_within_the_exponential_cap():
    delays = [full_jitter_delay(attempt, 0.1, 2.0) for attempt in range(1, 12) for _ in range(50)]

    assert all(0 <= delay <= 2.0 for delay in delays)
    assert max(full_jitter_delay(1, 0.1, 2.0) for _ in range(200)) <= 0.2
    assert len({round(delay, 6) for delay in delays}) > 100  # jittered, not fixed steps

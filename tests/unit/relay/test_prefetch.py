"""The read-ahead thread: order, chunk boundaries, quiet reads, errors, bounds and stopping."""

import threading
from collections import deque
from typing import Any, cast

import pytest
from bson import Timestamp
from pymongo.errors import OperationFailure

from localdev.servers import wait_until
from relay.prefetch import PrefetchedStream


class FakeChange:
    def __init__(self, number: int, size: int = 10) -> None:
        self.number = number
        self.raw = b"x" * size


class FakeCursor:
    def __init__(self, stream: "FakeStream") -> None:
        self._stream = stream

    def _has_next(self) -> bool:
        return bool(self._stream.buffered)


class FakeStream:
    """A change stream as pymongo shows it: server batches, quiet reads, then maybe an error.

    `script` holds batches (lists of changes, drained one by one), None for a read that finds
    nothing, and exceptions to raise.
    """

    def __init__(self, script: list[Any], *, end_alive: bool = True) -> None:
        self.script = deque(script)
        self.buffered: deque[Any] = deque()
        self.alive = True
        self.end_alive = end_alive
        self.resume_token: Any = {"_data": "00"}
        self.reads = 0
        self.reader_threads: set[str] = set()
        self._cursor = FakeCursor(self)

    def try_next(self) -> Any:
        self.reads += 1
        self.reader_threads.add(threading.current_thread().name)
        if not self.buffered:
            if not self.script:
                self.alive = self.end_alive
                return None
            step = self.script.popleft()
            if isinstance(step, Exception):
                raise step
            if step is None:
                self.resume_token = {"_data": f"quiet-{self.reads}"}
                return None
            self.buffered.extend(step)
        return self.buffered.popleft()


class FakeSession:
    operation_time = Timestamp(1_700_000_000, 7)


def batch(start: int, count: int, size: int = 10) -> list[FakeChange]:
    return [FakeChange(number, size) for number in range(start, start + count)]


def test_changes_come_in_stream_order_with_drained_where_each_server_batch_ends():
    # GIVEN two server batches, then a stream the server closes
    stream = FakeStream([batch(0, 3), batch(3, 2)], end_alive=False)
    stop = threading.Event()

    # WHEN the relay takes everything the reader read
    with prefetch(stream, FakeSession(), stop) as prefetched:
        chunks = list(prefetched.chunks())

    # THEN each batch is one chunk marked drained, then one quiet chunk says the stream is dead
    assert [[change.number for change in chunk.changes] for chunk in chunks] == [
        [0, 1, 2],
        [3, 4],
        [],
    ]
    assert [chunk.drained for chunk in chunks] == [True, True, True]
    assert chunks[-1].alive is False
    assert stream.reader_threads == {"change-reader"}


def test_a_long_batch_is_cut_by_count_and_by_bytes_and_only_its_end_is_drained():
    stream = FakeStream([batch(0, 5) + batch(5, 2, size=100)], end_alive=False)

    with prefetch(
        stream,
        None,
        threading.Event(),
        chunk_max_changes=3,
        chunk_max_bytes=150,
    ) as prefetched:
        chunks = list(prefetched.chunks())

    assert [[change.number for change in chunk.changes] for chunk in chunks[:-1]] == [
        [0, 1, 2],
        [3, 4, 5],  # 3 changes
        [6],  # the byte limit: 100 + 100 would pass 150
    ]
    assert [chunk.drained for chunk in chunks[:-1]] == [False, False, True]


def test_a_quiet_read_carries_the_post_batch_token_and_the_operation_time():
    stream = FakeStream([batch(0, 1), None], end_alive=False)

    with prefetch(stream, FakeSession(), threading.Event()) as prefetched:
        chunks = list(prefetched.chunks())

    quiet = chunks[1]
    assert quiet.changes == []
    assert quiet.alive is True
    assert quiet.resume_token == {"_data": "quiet-2"}
    assert quiet.operation_time == Timestamp(1_700_000_000, 7)


def test_a_read_error_is_raised_in_the_callers_thread_after_what_was_read_before_it():
    failure = OperationFailure("history lost", code=286)
    stream = FakeStream([batch(0, 2), failure])
    seen: list[int] = []

    def take_all(prefetched: Any) -> None:
        for chunk in prefetched.chunks():
            seen.extend(change.number for change in chunk.changes)

    with (
        prefetch(stream, None, threading.Event()) as prefetched,
        pytest.raises(OperationFailure) as raised,
    ):
        take_all(prefetched)

    assert raised.value is failure
    assert seen == [0, 1]


def test_the_reader_stays_a_bounded_number_of_chunks_ahead():
    # GIVEN a large backlog and a relay that takes nothing yet
    stream = FakeStream([batch(0, 1000)])
    stop = threading.Event()

    with prefetch(stream, None, stop, chunks_ahead=2, chunk_max_changes=10) as prefetched:
        # THEN the reader fills the queue and one more chunk in hand, and waits
        wait_until(lambda: stream.reads >= 30, deadline_s=5, what="the reader filling its queue")
        reads = stream.reads
        assert not wait_until_changed(lambda: stream.reads, reads, within_s=0.5)
        assert reads == 30

        # WHEN the relay takes one chunk, the reader reads one more
        first = next(prefetched.chunks())
        assert [change.number for change in first.changes] == list(range(10))
        wait_until(lambda: stream.reads == 40, deadline_s=5, what="the reader reading on")
        stop.set()


def test_leaving_stops_the_reader_even_while_it_waits_on_a_full_queue():
    stream = FakeStream([batch(0, 1000)])

    with prefetch(stream, None, threading.Event(), chunks_ahead=1, chunk_max_changes=5):
        wait_until(lambda: stream.reads >= 10, deadline_s=5, what="the reader blocked on the queue")

    assert not any(thread.name == "change-reader" for thread in threading.enumerate())


def test_a_relay_stop_ends_the_chunks_and_the_reader():
    stream = FakeStream([None] * 10_000)
    stop = threading.Event()

    with prefetch(stream, None, stop) as prefetched:
        chunks = prefetched.chunks()
        assert next(chunks).changes == []
        stop.set()
        assert list(chunks) == []

    assert not any(thread.name == "change-reader" for thread in threading.enumerate())


def prefetch(stream: FakeStream, session: Any, stop: threading.Event, **options: int) -> Any:
    """A `PrefetchedStream` over the fake (typed as pymongo's stream for the checker)."""
    return PrefetchedStream(cast(Any, stream), session, stop, **options)


def wait_until_changed(read: Any, value: Any, *, within_s: float) -> bool:
    """Whether `read()` differs from `value` at some point within `within_s` seconds."""
    changed = threading.Event()

    def watch() -> None:
        while not changed.wait(0.01):
            if read() != value:
                changed.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = changed.wait(within_s)
    changed.set()
    watcher.join()
    return result

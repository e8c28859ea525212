"""The forwarding pipeline: batches of entries, several PutEvents in flight, an in-order watermark.

The reader thread `add`s items in stream order; full batches (or a partial one, on `flush`) go to
one sender thread running an asyncio loop, which keeps up to `max_in_flight` calls in flight.
Each batch is retried entry by entry until every entry is accepted or dead-lettered. The
watermark is the position of the newest item that, with every item before it, is done: the only
position a checkpoint may hold. Reusable by anything that forwards changes in order (the backfill
uses it too); it never reads MongoDB and never writes checkpoints itself.
"""

import asyncio
import functools
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from bson import Timestamp

from change_contract.encode import PutEventsEntry
from relay.checkpoint import Position
from relay.deadletter import DeadLetter, DeadLetterSink
from relay.telemetry import Stats, logger

# PutEvents entry error codes EventBridge documents as final; anything else (throttling, internal
# failures, codes we do not know) is retried until it passes.
PERMANENT_ERROR_CODES: Final = frozenset(
    {
        "AccessDeniedException",
        "InvalidAccountIdException",
        "InvalidArgument",
        "MalformedDetail",
        "RedactionFailure",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
        "ValidationException",
    }
)
# Whole-request errors that no retry will cure; the entries of such a request are dead-lettered.
PERMANENT_REQUEST_ERRORS: Final = frozenset(
    {
        "AccessDeniedException",
        "ValidationException",
        "InvalidArgument",
        "MalformedDetail",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    }
)


_T = TypeVar("_T")


class HaltError(RuntimeError):
    """A change was rejected for good and ON_PERMANENT_FAILURE=halt: the relay must stop."""


@dataclass(slots=True)
class Item:
    """One change on its way: the entry to send, and what the checkpoint and a dead letter need.

    `error` set means the change is already known bad (the contract could not encode it): it is
    dead-lettered instead of sent. `entry` None with no error is a pure position (a gap marker).
    """

    entry: PutEventsEntry | None
    size: int
    event_id: str
    token: Mapping[str, Any] | None
    cluster_time: Timestamp | None
    change: Mapping[str, Any] | None = None
    error: str | None = None
    start_after: bool = False


@dataclass(slots=True)
class _Batch:
    items: list[Item]
    position: Position | None = None  # where the watermark stands once this batch is done
    done: bool = False


@dataclass(frozen=True, slots=True)
class ForwarderOptions:
    batch_max_entries: int = 10
    max_in_flight: int = 8
    max_request_bytes: int = 1_048_576
    retry_base_s: float = 0.1
    retry_max_s: float = 20.0
    halt_on_permanent_failure: bool = False


@dataclass
class _Watermark:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: deque[_Batch] = field(default_factory=deque)
    position: Position | None = None


class Forwarder:
    """Batches, sends and acknowledges in order. One reader thread calls `add`/`flush`."""

    def __init__(
        self,
        events_client: Any,
        dead_letters: DeadLetterSink,
        stats: Stats,
        options: ForwarderOptions,
    ) -> None:
        self._client = events_client
        self._dead_letters = dead_letters
        self._stats = stats
        self._options = options
        # The calls wait for their answers on one thread: a sender thread per call, woken by its
        # own answer after a round trip asleep, cost about twice the CPU per call at 25 ms (README
        # 'Performance design'). A client with `put_events_async` (the lean one) runs on the loop;
        # another (botocore's) and the dead-letter sends, which block, run on `_blocking`.
        self._loop = asyncio.new_event_loop()
        self._slots = asyncio.Semaphore(options.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._blocking = ThreadPoolExecutor(options.max_in_flight, thread_name_prefix="put-events")
        put_async = getattr(events_client, "put_events_async", None)
        self._put_events: Callable[[list[Any]], Awaitable[dict[str, Any]]] = (
            put_async if put_async is not None else self._put_events_blocking
        )
        # Batches handed to the loop: up to `max_in_flight` being sent and as many more waiting
        # for a place. A call that ends starts a waiting batch at once, and the reader, once it
        # has filled every place, sleeps until half of them are free again: one wake-up per
        # `max_in_flight` batches instead of one per batch when the calls are slow.
        self._handed_limit = 2 * options.max_in_flight
        self._handed = 0
        self._place_free = threading.Condition(threading.Lock())
        # Batches handed but not yet started on the loop. The reader wakes the loop only for the
        # first of a run of them, not once per batch (each wake-up is a write to the loop's pipe).
        self._arrival_lock = threading.Lock()
        self._arrived: list[_Batch] = []
        self._abort = threading.Event()
        self._aborted = asyncio.Event()  # the loop's side of `_abort`
        self._mark = _Watermark()
        self._idle = threading.Condition(self._mark.lock)
        self._batch: list[Item] = []
        self._batch_bytes = 0
        self.halt_error: HaltError | None = None
        # Monotonic time of the last PutEvents answer or wait: the health check's "still working".
        self.last_activity = time.monotonic()
        self._sender = threading.Thread(
            target=self._loop.run_forever, name="put-events-loop", daemon=True
        )
        self._sender.start()

    # The reader side.

    def add(self, item: Item) -> None:
        """Queue one item in stream order; sends the current batch first when it would overflow."""
        batch = self._batch
        if batch and (
            len(batch) >= self._options.batch_max_entries
            or self._batch_bytes + item.size > self._options.max_request_bytes
        ):
            self.flush()
            batch = self._batch
        batch.append(item)
        self._batch_bytes += item.size
        if len(batch) >= self._options.batch_max_entries:
            self.flush()

    def flush(self) -> None:
        """Send the partial batch now (the stream has nothing more buffered)."""
        if not self._batch:
            return
        items, self._batch, self._batch_bytes = self._batch, [], 0
        batch = _Batch(items, _position_of(items))
        with self._mark.lock:
            # Pending before it is sent, so the watermark can never pass it, even if never sent.
            self._mark.pending.append(batch)
        with self._place_free:
            while self._handed >= self._handed_limit:
                if not self._place_free.wait(timeout=0.5):
                    self.last_activity = time.monotonic()
                    if self._abort.is_set():
                        return
            self._handed += 1
        with self._arrival_lock:
            self._arrived.append(batch)
            wake = len(self._arrived) == 1
        if not wake:
            return
        try:
            self._loop.call_soon_threadsafe(self._start_arrived)
        except RuntimeError:  # the loop is closed: the forwarder was closed
            with self._arrival_lock:
                self._arrived.remove(batch)
            self._release_place()
            raise

    def add_position(self, position: Position) -> None:
        """Advance the watermark to `position` once everything queued before it is done."""
        self.flush()
        with self._mark.lock:
            if not self._mark.pending:
                self._mark.position = position
                self._idle.notify_all()
                return
            self._mark.pending.append(_Batch([], position, done=True))

    # What the checkpointer and the service read.

    @property
    def watermark(self) -> Position | None:
        with self._mark.lock:
            return self._mark.position

    @property
    def in_flight(self) -> int:
        with self._mark.lock:
            return sum(1 for batch in self._mark.pending if not batch.done)

    def drain(self, deadline_s: float) -> bool:
        """Send what is queued and wait until everything is done; False if the deadline passed."""
        self.flush()
        end = time.monotonic() + deadline_s
        with self._idle:
            while self._mark.pending:
                remaining = end - time.monotonic()
                if remaining <= 0 or self.halt_error is not None:
                    return False
                self._idle.wait(min(remaining, 0.5))
        return True

    def abort(self) -> None:
        """Stop retrying: batches not yet done stay undone (and the watermark stays before them)."""
        self._abort.set()
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._aborted.set)

    def close(self) -> None:
        """Abort, let the calls in flight end (each within its timeout), and stop the sender."""
        self.abort()
        if not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._wind_down(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._sender.join()
            self._loop.close()
        self._blocking.shutdown(wait=True, cancel_futures=True)

    # The sender side (the loop's thread).

    async def _wind_down(self) -> None:
        # Batches still waiting for a place see the abort and end without sending.
        await asyncio.gather(*self._tasks)
        close_client = getattr(self._client, "aclose", None)
        if close_client is not None:
            await close_client()

    def _start_arrived(self) -> None:
        with self._arrival_lock:
            batches, self._arrived = self._arrived, []
        for batch in batches:
            task = self._loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch) -> None:
        completed = False
        try:
            async with self._slots:
                if not self._abort.is_set():
                    completed = await self._send(batch)
        except HaltError as error:
            self.halt_error = error
        except Exception:  # noqa: BLE001 - a bug here must not leave the batch silently undone
            logger.exception("batch failed unexpectedly", entries=len(batch.items))
            self.halt_error = HaltError("unexpected error while forwarding; see the log")
        finally:
            self._release_place()
        if completed:
            self._complete(batch)

    async def _in_thread(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking call on the blocking pool, so the loop goes on with the other calls."""
        return await self._loop.run_in_executor(self._blocking, call, *args)

    async def _put_events_blocking(self, entries: list[Any]) -> dict[str, Any]:
        call = functools.partial(self._client.put_events, Entries=entries)
        response: dict[str, Any] = await self._in_thread(call)
        return response

    async def _aborted_within(self, delay_s: float) -> bool:
        """Wait `delay_s` seconds; True at once if the forwarder is aborted meanwhile."""
        try:
            await asyncio.wait_for(self._aborted.wait(), delay_s)
        except TimeoutError:
            return self._abort.is_set()
        return True

    def _release_place(self) -> None:
        with self._place_free:
            self._handed -= 1
            if self._handed == self._handed_limit // 2:
                self._place_free.notify()

    def _complete(self, batch: _Batch) -> None:
        with self._mark.lock:
            batch.done = True
            pending = self._mark.pending
            while pending and pending[0].done:
                head = pending.popleft()
                if head.position is not None:
                    self._mark.position = head.position
            self._idle.notify_all()

    async def _send(self, batch: _Batch) -> bool:
        to_send: list[Item] = []
        for item in batch.items:
            if item.error is not None:
                if not await self._dead_letter(item, "BadInput", item.error):
                    return False
            elif item.entry is not None:
                to_send.append(item)
        attempt = 0
        while to_send:
            retry = await self._put(to_send)
            if retry is None:
                return False
            if not retry:
                break
            attempt += 1
            self._stats.add("Retries", len(retry))
            delay = full_jitter_delay(
                attempt, self._options.retry_base_s, self._options.retry_max_s
            )
            logger.warning(
                "retrying entries", entries=len(retry), attempt=attempt, delay_s=round(delay, 3)
            )
            if await self._aborted_within(delay):
                return False
            to_send = retry
        return True

    async def _put(self, items: Sequence[Item]) -> list[Item] | None:
        """One PutEvents call. Returns the items to retry ([] when all settled), None to abandon."""
        entries = [item.entry for item in items]
        try:
            response = await self._put_events(entries)
            self.last_activity = time.monotonic()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            if code in PERMANENT_REQUEST_ERRORS:
                logger.error("put events rejected for good", error_code=code, entries=len(items))
                for item in items:
                    if not await self._dead_letter(item, code, str(error)):
                        return None
                return []
            logger.warning("put events failed, will retry", error_code=code, entries=len(items))
            self._stats.add("PutEventsFailedEntries", len(items))
            return list(items)
        except BotoCoreError as error:
            # Connection resets, timeouts, endpoint unreachable: all worth retrying.
            logger.warning(
                "put events call failed, will retry", error=type(error).__name__, entries=len(items)
            )
            self._stats.add("PutEventsFailedEntries", len(items))
            return list(items)

        results = response.get("Entries") or []
        failed_count = response.get("FailedEntryCount", 0)
        if len(results) != len(items):
            logger.warning(
                "put events answered a different number of entries, will retry",
                sent=len(items),
                answered=len(results),
            )
            self._stats.add("PutEventsFailedEntries", len(items))
            return list(items)
        newest = items[-1].cluster_time
        if not failed_count:
            self._stats.batch(len(items), _lag(newest))
            return []
        retry: list[Item] = []
        forwarded = 0
        for item, result in zip(items, results, strict=True):
            code = result.get("ErrorCode")
            if not code:
                forwarded += 1
                continue
            self._stats.add("PutEventsFailedEntries")
            if code in PERMANENT_ERROR_CODES:
                reason = str(result.get("ErrorMessage", ""))
                if not await self._dead_letter(item, code, reason):
                    return None
            else:
                retry.append(item)
        self._stats.batch(forwarded, _lag(newest))
        return retry

    async def _dead_letter(self, item: Item, code: str, reason: str) -> bool:
        self._stats.add("PermanentFailures")
        if code == "BadInput":
            self._stats.add("BadInput")
        letter = DeadLetter(item.event_id, reason, code, item.change, item.cluster_time)
        if self._options.halt_on_permanent_failure:
            logger.error(
                "change rejected for good, halting",
                event_id=item.event_id,
                error_code=code,
                reason=reason,
            )
            raise HaltError(f"change {item.event_id} rejected for good ({code}): {reason}")
        send = functools.partial(self._dead_letters.send, should_stop=self._abort.is_set)
        sent: bool = await self._in_thread(send, letter)
        return sent


def _position_of(items: Sequence[Item]) -> Position | None:
    for item in reversed(items):
        if item.token is not None:
            return Position(item.token, item.cluster_time, item.start_after)
    return None


def _lag(cluster_time: Timestamp | None) -> float | None:
    if cluster_time is None:
        return None
    return max(0.0, time.time() - cluster_time.time)


def full_jitter_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap_s, base_s * 2**attempt))

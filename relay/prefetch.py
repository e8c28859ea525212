"""A change stream read ahead on its own thread, so the server builds the next batch while the
relay encodes and forwards the last one.

pymongo asks for the next batch (`getMore`) only once its buffer is empty, and waits for it; read
and processed on one thread, the server's time and the relay's add up. Here one thread iterates
the stream and hands changes over in order, in bounded chunks; the relay's thread takes them.
This module never encodes, forwards or checkpoints; what it holds ahead is bounded.
"""

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from bson import Timestamp
from pymongo.change_stream import ChangeStream
from pymongo.client_session import ClientSession

# A chunk ends where pymongo's buffer does, or at this many changes or raw bytes, whichever first;
# at most CHUNKS_AHEAD chunks wait, so the read-ahead is bounded by about 8 MiB plus one change.
CHUNK_MAX_CHANGES: Final = 256
CHUNK_MAX_BYTES: Final = 1_048_576
CHUNKS_AHEAD: Final = 8
# How often a waiting side looks at the stop flag.
_POLL_S: Final = 0.2


@dataclass(slots=True)
class Chunk:
    """Changes read in stream order, and what the stream said after the last of them.

    `drained`: pymongo had nothing more buffered, so the next read waits on the server (the
    moment to send a partial batch). A chunk without changes is a read that found none: it
    carries the stream's `alive`, `resume_token` (the post-batch token) and the session's
    `operation_time` at that moment.
    """

    changes: list[Any] = field(default_factory=list)
    drained: bool = True
    alive: bool = True
    resume_token: Any = None
    operation_time: Timestamp | None = None


@dataclass(slots=True)
class _Failed:
    error: Exception


class PrefetchedStream:
    """Reads `stream` on a thread of its own; `chunks()` yields what it read, in order.

    A read error (network, history lost, ...) is raised by `chunks()` in the caller's thread, after
    every chunk read before it. Leaving the `with` block stops the thread before the stream is
    closed, so the stream is never used by two threads at once.
    """

    def __init__(
        self,
        stream: ChangeStream[Any],
        session: ClientSession | None,
        stop: threading.Event,
        *,
        chunks_ahead: int = CHUNKS_AHEAD,
        chunk_max_changes: int = CHUNK_MAX_CHANGES,
        chunk_max_bytes: int = CHUNK_MAX_BYTES,
    ) -> None:
        self._stream = stream
        self._session = session
        self._stop = stop
        self._done = threading.Event()  # the reader must stop: relay stopping or caller gone
        self._queue: queue.Queue[Chunk | _Failed | None] = queue.Queue(maxsize=chunks_ahead)
        self._chunk_max_changes = chunk_max_changes
        self._chunk_max_bytes = chunk_max_bytes
        self._thread = threading.Thread(target=self._read, name="change-reader", daemon=True)

    def __enter__(self) -> "PrefetchedStream":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        # The reader notices within one getMore wait (MAX_AWAIT_TIME_MS) or one poll.
        self._thread.join()

    def chunks(self) -> Iterator[Chunk]:
        """What the reader read, in order; ends when the relay stops or the stream is dead."""
        while not self._stop.is_set():
            try:
                message = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if message is None:
                return
            if isinstance(message, _Failed):
                raise message.error
            yield message

    # The reader thread.

    def _read(self) -> None:
        try:
            self._read_until_done()
        except Exception as error:  # noqa: BLE001 - handed over, raised again by chunks()
            self._put(_Failed(error))

    def _read_until_done(self) -> None:
        stream = self._stream
        cursor = stream._cursor
        changes: list[Any] = []
        size = 0
        while not self._should_stop():
            change = stream.try_next()
            if change is not None:
                changes.append(change)
                size += len(getattr(change, "raw", b""))
                drained = not cursor._has_next()
                full = len(changes) >= self._chunk_max_changes or size >= self._chunk_max_bytes
                if drained or full:
                    if not self._put(Chunk(changes, drained=drained)):
                        return
                    changes, size = [], 0
                continue
            quiet = Chunk(
                alive=stream.alive,
                resume_token=stream.resume_token,
                operation_time=self._session.operation_time if self._session else None,
            )
            if not self._put(quiet) or not quiet.alive:
                break
        self._put(None)

    def _should_stop(self) -> bool:
        return self._stop.is_set() or self._done.is_set()

    def _put(self, message: Chunk | _Failed | None) -> bool:
        """Queue `message`, waiting while the queue is full; False when told to stop first."""
        while not self._should_stop():
            try:
                self._queue.put(message, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

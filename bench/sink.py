"""A loopback PutEvents endpoint that accepts every entry, with an added latency per call.

It stands in for EventBridge in the benchmarks. It runs in its own process (`python -m
bench.sink`), so its request handling never competes for the measured process's GIL, and it
records, per run: entries and requests received, the arrival time of each request, the commit-to-
arrival latency of every entry (from the `wallTime` inside the entry's Detail), and CPU samples of
the forwarding process (from /proc, so the forwarder needs no instrumentation).

It shares the machine's cores with the measured process and MongoDB, which EventBridge never does,
so it spends as little CPU per request as it can: one asyncio thread, a request parser that reads
only what its clients send, orjson, one write per answer, and the added latency as a timer rather
than a sleeping thread.

Control endpoints (plain HTTP, JSON): `POST /_bench/arm` (reset counters, set latency, watched
pid and target), `GET /_bench/stats`. Every other POST must be a PutEvents call.
"""

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from localdev.servers import ManagedProcess, free_port, wait_until

PUT_EVENTS_TARGET = "AWSEvents.PutEvents"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
# CPU of the watched process is sampled at most this often (plus at the first entry and when the
# target is crossed), so sampling costs the sink little at thousands of requests per second.
CPU_SAMPLE_INTERVAL_S = 0.05
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A request head (request line and headers) longer than this ends the connection.
MAX_HEAD_BYTES = 65_536
_WALL_TIME = re.compile(r'"wallTime"\s*:\s*\{\s*"\$date"\s*:\s*("[^"]+"|\{[^}]*\})')


class SinkError(RuntimeError):
    """The sink could not be started or did not answer."""


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all threads), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of /proc/PID/stat (utime, stime); index 0 here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def wall_time_of(detail: str) -> float | None:
    """The commit time (epoch seconds) in a Detail's `wallTime`, or None when it has none."""
    match = _WALL_TIME.search(detail)
    if match is None:
        return None
    value = json.loads(match.group(1))
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).timestamp()
    if isinstance(value, Mapping) and "$numberLong" in value:
        return int(value["$numberLong"]) / 1000
    return None


@dataclass
class CpuSample:
    at: float
    entries: int
    cpu_s: float


@dataclass
class SinkState:
    """Counters of one run, kept by the sink's event loop; `lock` keeps each snapshot whole."""

    latency_s: float = 0.0
    watch_pid: int | None = None
    target_entries: int | None = None
    # Latencies are kept only for changes committed at or after this epoch time, so a backlog's
    # tail still in flight never pollutes a latency run. None (throughput runs): no Detail is
    # parsed at all, so the sink spends as little CPU per entry as it can beside the measured
    # process on the same cores.
    latency_since: float | None = None
    requests: int = 0
    entries: int = 0
    rejected: int = 0
    first_arrival: float | None = None
    last_arrival: float | None = None
    first_request_entries: int = 0
    latencies_s: list[float] = field(default_factory=list)
    cpu_samples: list[CpuSample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, arrival: float, details: list[str]) -> None:
        since = self.latency_since
        commits = [] if since is None else [wall_time_of(detail) for detail in details]
        with self.lock:
            before = self.entries
            self.requests += 1
            self.entries += len(details)
            if self.first_arrival is None:
                self.first_arrival = arrival
                self.first_request_entries = len(details)
            self.last_arrival = arrival
            self.latencies_s.extend(
                arrival - commit
                for commit in commits
                if commit is not None and since is not None and commit >= since
            )
            self._sample_cpu(arrival, before)

    def _sample_cpu(self, arrival: float, before: int) -> None:
        if self.watch_pid is None:
            return
        if self.target_entries is not None and before >= self.target_entries:
            return  # the measured window ends where the target is crossed
        crossed = self.target_entries is not None and before < self.target_entries <= self.entries
        due = not self.cpu_samples or arrival - self.cpu_samples[-1].at >= CPU_SAMPLE_INTERVAL_S
        if crossed or due:
            cpu = process_cpu_seconds(self.watch_pid)
            if cpu is not None:
                self.cpu_samples.append(CpuSample(arrival, self.entries, cpu))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "latency_ms": self.latency_s * 1000,
                "watch_pid": self.watch_pid,
                "target_entries": self.target_entries,
                "latency_since": self.latency_since,
                "requests": self.requests,
                "entries": self.entries,
                "rejected": self.rejected,
                "first_arrival": self.first_arrival,
                "last_arrival": self.last_arrival,
                "first_request_entries": self.first_request_entries,
                "latencies_s": list(self.latencies_s),
                "cpu_samples": [asdict(sample) for sample in self.cpu_samples],
            }


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class BadRequestError(ValueError):
    """A request the sink cannot read as HTTP/1.1 (the message says why); the connection ends."""


def parse_request(buffer: bytearray) -> tuple[Request, int] | None:
    """The first whole request in `buffer` and its length in bytes; None while it is incomplete.

    Reads exactly what the benchmark's clients send (urllib3, urllib, the relay's own connection):
    a request line, headers and a Content-Length body. Chunked bodies are refused.
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadRequestError(f"request head over {MAX_HEAD_BYTES} bytes")
        return None
    lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequestError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequestError(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise BadRequestError("chunked request bodies are not read by this sink")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise BadRequestError(f"bad Content-Length {length_text[:20]!r}")
    total = head_end + 4 + int(length_text)
    if len(buffer) < total:
        return None
    body = bytes(buffer[head_end + 4 : total])
    return Request(parts[0], parts[1], headers, body), total


def http_response(status: HTTPStatus, body: Mapping[str, Any], content_type: str) -> bytes:
    """One HTTP/1.1 response with a JSON body, as a single write."""
    payload = orjson.dumps(body)
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n\r\n"
    )
    return head.encode("latin-1") + payload


class Sink:
    """What every connection shares: the run's state and the event ids handed out."""

    def __init__(self, latency_s: float) -> None:
        self.state = SinkState(latency_s=latency_s)
        self._event_ids = 0

    def next_event_ids(self, count: int) -> list[str]:
        start = self._event_ids
        self._event_ids += count
        return [f"00000000-0000-4000-8000-{number:012x}" for number in range(start, start + count)]

    def answer(self, request: Request) -> tuple[bytes, float]:
        """The response to `request`, and how long to hold it back (the run's added latency)."""
        status, body, content_type = self._handle(request)
        # Only an accepted PutEvents waits; refusals and the control endpoints answer at once.
        put_events = not request.path.startswith("/_bench/")
        delay_s = self.state.latency_s if put_events and status == HTTPStatus.OK else 0.0
        return http_response(status, body, content_type), delay_s

    def _handle(self, request: Request) -> tuple[HTTPStatus, dict[str, Any], str]:
        if request.method == "GET":
            if request.path == "/_bench/stats":
                return HTTPStatus.OK, self.state.snapshot(), "application/json"
            return HTTPStatus.NOT_FOUND, {"message": "unknown path"}, "application/json"
        if request.method != "POST":
            return self._error(
                HTTPStatus.METHOD_NOT_ALLOWED, "UnknownOperationException", request.method
            )
        if request.path == "/_bench/arm":
            self._arm(orjson.loads(request.body or b"{}"))
            return HTTPStatus.OK, {"armed": True}, "application/json"
        arrival = time.time()
        target = request.headers.get("x-amz-target")
        if target != PUT_EVENTS_TARGET:
            return self._error(
                HTTPStatus.BAD_REQUEST,
                "UnknownOperationException",
                f"this sink only answers {PUT_EVENTS_TARGET}, not {target!r}",
            )
        details = _details_of(request.body)
        if isinstance(details, str):
            return self._error(HTTPStatus.BAD_REQUEST, "ValidationException", details)
        self.state.record(arrival, details)
        entries = [{"EventId": event_id} for event_id in self.next_event_ids(len(details))]
        return HTTPStatus.OK, {"FailedEntryCount": 0, "Entries": entries}, JSON_CONTENT_TYPE

    def _error(
        self, status: HTTPStatus, kind: str, message: str
    ) -> tuple[HTTPStatus, dict[str, Any], str]:
        with self.state.lock:
            self.state.rejected += 1
        return status, {"__type": kind, "message": message}, JSON_CONTENT_TYPE

    def _arm(self, settings: Mapping[str, Any]) -> None:
        self.state = SinkState(
            latency_s=float(settings.get("latency_ms", 0)) / 1000,
            watch_pid=settings.get("watch_pid"),
            target_entries=settings.get("target_entries"),
            latency_since=_optional_float(settings.get("latency_since")),
        )


class SinkConnection(asyncio.Protocol):
    """One client connection: requests answered in order, each after the run's added latency."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiting = False  # an answer is held back by the added latency

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The answer is one write, but Nagle would still hold it behind the client's ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._waiting:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        while self._transport is not None:
            try:
                parsed = parse_request(self._buffer)
            except BadRequestError as error:
                refusal = {"message": str(error)}
                self._transport.write(
                    http_response(HTTPStatus.BAD_REQUEST, refusal, "application/json")
                )
                self._transport.close()
                return
            if parsed is None:
                return
            request, length = parsed
            del self._buffer[:length]
            response, delay_s = self._sink.answer(request)
            close = request.headers.get("connection", "").lower() == "close"
            if delay_s:
                self._waiting = True
                loop = asyncio.get_running_loop()
                loop.call_later(delay_s, self._send_later, response, close)
                return
            self._send(response, close)

    def _send(self, response: bytes, close: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(response)
        if close:
            self._transport.close()

    def _send_later(self, response: bytes, close: bool) -> None:
        self._waiting = False
        self._send(response, close)
        self._serve_buffered()


async def serve(port: int, latency_s: float) -> None:
    """Answer on 127.0.0.1:`port` until the process is stopped."""
    sink = Sink(latency_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkConnection(sink),
        "127.0.0.1",
        port,
        # Forwarders keep a pool of connections open; a small backlog would drop bursts.
        backlog=128,
        reuse_address=True,
    )
    async with server:
        await server.serve_forever()


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _details_of(body: bytes) -> list[str] | str:
    """The Detail of every entry of a PutEvents request, or a message saying what is wrong."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return f"request body is not JSON: {error}"
    entries = request.get("Entries") if isinstance(request, dict) else None
    if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
        return "Entries must be a list of 1 to 10 entries"
    details = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str) for key in ("Source", "DetailType", "Detail")
        ):
            return f"entry {index} needs string Source, DetailType and Detail"
        details.append(entry["Detail"])
    return details


@dataclass
class SinkClient:
    """The benchmark's handle on a running sink."""

    endpoint: str

    def arm(
        self,
        *,
        latency_ms: float,
        watch_pid: int | None = None,
        target: int | None = None,
        latency_since: float | None = None,
    ) -> None:
        settings = {
            "latency_ms": latency_ms,
            "watch_pid": watch_pid,
            "target_entries": target,
            "latency_since": latency_since,
        }
        request = urllib.request.Request(
            f"{self.endpoint}/_bench/arm", data=json.dumps(settings).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint}/_bench/stats", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
        return stats

    def entries(self) -> int:
        count: int = self.stats()["entries"]
        return count

    def wait_for_entries(self, count: int, *, deadline_s: float, what: str) -> None:
        wait_until(lambda: self.entries() >= count, deadline_s=deadline_s, what=what)

    def wait_quiet(self, *, quiet_s: float, deadline_s: float) -> None:
        """Wait until no entry has arrived for `quiet_s` seconds."""
        wait_until(
            lambda: time.time() - (self.stats()["last_arrival"] or 0.0) >= quiet_s,
            deadline_s=deadline_s,
            what=f"the sink quiet for {quiet_s:g} s",
        )

    def wait_for_latencies(self, count: int, *, deadline_s: float, what: str) -> None:
        """Wait until `count` entries committed since the run's `latency_since` arrived."""
        wait_until(
            lambda: len(self.stats()["latencies_s"]) >= count, deadline_s=deadline_s, what=what
        )


@dataclass
class RunningSink:
    process: ManagedProcess
    client: SinkClient

    def stop(self) -> None:
        self.process.stop()


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_bench/stats", timeout=1):
            return True
    except OSError:
        return False


def start_sink(latency_ms: float = 0) -> RunningSink:
    """Start the sink in its own process on a free loopback port and wait until it answers."""
    port = free_port()
    args = [sys.executable, "-m", "bench.sink", "--port", str(port)]
    process = ManagedProcess("putevents-sink", [*args, "--latency-ms", str(latency_ms)])
    process.start()
    client = SinkClient(f"http://127.0.0.1:{port}")
    try:
        wait_until(
            lambda: _answers(client.endpoint) or not process.running,
            deadline_s=20,
            what="PutEvents sink answering",
        )
    except TimeoutError as error:
        process.stop()
        raise SinkError(str(error)) from error
    if not process.running:
        tail = process.output_tail()
        process.stop()
        raise SinkError(f"PutEvents sink exited at start: {tail}")
    return RunningSink(process, client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.latency_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())

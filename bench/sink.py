"""A loopback PutEvents endpoint that accepts every entry, with an added latency per call.

It stands in for EventBridge in the benchmarks. It runs in its own process (`python -m
bench.sink`), so its request handling never competes for the measured process's GIL, and it
records, per run: entries and requests received, the arrival time of each request, the commit-to-
arrival latency of every entry (from the `wallTime` inside the entry's Detail), and CPU samples of
the forwarding process (from /proc, so the forwarder needs no instrumentation).

Control endpoints (plain HTTP, JSON): `POST /_bench/arm` (reset counters, set latency, watched
pid and target), `GET /_bench/stats`. Every other POST must be a PutEvents call.
"""

import argparse
import datetime as dt
import json
import os
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localdev.servers import ManagedProcess, free_port, wait_until

PUT_EVENTS_TARGET = "AWSEvents.PutEvents"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
# CPU of the watched process is sampled at most this often (plus at the first entry and when the
# target is crossed), so sampling costs the sink little at thousands of requests per second.
CPU_SAMPLE_INTERVAL_S = 0.05
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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
    """Counters of one run. Mutated under `lock` by the handler threads."""

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


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    # Forwarders keep a pool of connections open; the default backlog of 5 drops bursts.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], latency_s: float) -> None:
        super().__init__(address, SinkHandler)
        self.state = SinkState(latency_s=latency_s)
        self.event_ids = 0
        self.ids_lock = threading.Lock()

    def next_event_ids(self, count: int) -> list[str]:
        with self.ids_lock:
            start = self.event_ids
            self.event_ids += count
        return [f"00000000-0000-4000-8000-{number:012x}" for number in range(start, start + count)]


class SinkHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as botocore expects of AWS endpoints.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK would add
    # about 40 ms to every call.
    disable_nagle_algorithm = True
    server: SinkServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a log line per request would cost more than the request."""

    def _reply(self, status: HTTPStatus, body: Mapping[str, Any], content_type: str) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: HTTPStatus, kind: str, message: str) -> None:
        with self.server.state.lock:
            self.server.state.rejected += 1
        self._reply(status, {"__type": kind, "message": message}, JSON_CONTENT_TYPE)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def do_GET(self) -> None:
        if self.path == "/_bench/stats":
            self._reply(HTTPStatus.OK, self.server.state.snapshot(), "application/json")
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"message": "unknown path"}, "application/json")

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/_bench/arm":
            self._arm(json.loads(body or b"{}"))
            return
        arrival = time.time()
        target = self.headers.get("X-Amz-Target")
        if target != PUT_EVENTS_TARGET:
            self._error(
                HTTPStatus.BAD_REQUEST,
                "UnknownOperationException",
                f"this sink only answers {PUT_EVENTS_TARGET}, not {target!r}",
            )
            return
        details = _details_of(body)
        if isinstance(details, str):
            self._error(HTTPStatus.BAD_REQUEST, "ValidationException", details)
            return
        self.server.state.record(arrival, details)
        if self.server.state.latency_s:
            time.sleep(self.server.state.latency_s)
        entries = [{"EventId": event_id} for event_id in self.server.next_event_ids(len(details))]
        self._reply(HTTPStatus.OK, {"FailedEntryCount": 0, "Entries": entries}, JSON_CONTENT_TYPE)

    def _arm(self, settings: Mapping[str, Any]) -> None:
        fresh = SinkState(
            latency_s=float(settings.get("latency_ms", 0)) / 1000,
            watch_pid=settings.get("watch_pid"),
            target_entries=settings.get("target_entries"),
            latency_since=_optional_float(settings.get("latency_since")),
        )
        self.server.state = fresh
        self._reply(HTTPStatus.OK, {"armed": True}, "application/json")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _details_of(body: bytes) -> list[str] | str:
    """The Detail of every entry of a PutEvents request, or a message saying what is wrong."""
    try:
        request = json.loads(body)
    except ValueError as error:
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
    server = SinkServer(("127.0.0.1", args.port), args.latency_ms / 1000)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

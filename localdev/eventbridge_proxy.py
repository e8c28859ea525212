"""A loopback HTTP proxy in front of moto_server that injects EventBridge faults, for tests.

Every request goes to the upstream unchanged, except PutEvents calls, which a `FaultPlan` may
answer with a throttling error or a 5xx, slow down, or fail chosen entries: those entries are cut
from the request before it reaches moto (so moto never accepts them) and reported back as failed,
exactly as EventBridge reports a partial failure. The relay under test uses its real HTTP client.
"""

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

PUT_EVENTS_TARGET = "AWSEvents.PutEvents"
_JSON = [("Content-Type", "application/x-amz-json-1.1")]
# Headers the proxy sets itself (or the HTTP server does) rather than copying from upstream.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


@dataclass
class Fault:
    """What to do with one PutEvents call (the default passes it through)."""

    delay_s: float = 0.0
    status: int | None = None  # answer the whole call with this HTTP status
    error_code: str = "ThrottlingException"
    # entry index -> (error code, message): cut from the request and reported as failed
    failed_entries: dict[int, tuple[str, str]] = field(default_factory=dict)


FaultPlan = Callable[[int, list[dict[str, Any]]], Fault | None]


class EventBridgeFaultProxy:
    """Start with `running_proxy(upstream, plan)`; point AWS_ENDPOINT_URL at `endpoint`."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan: FaultPlan = plan or (lambda _n, _entries: None)
        self.put_events_calls = 0
        self.injected = 0
        # Answers the caller had stopped waiting for (a slow-call fault outlasting its timeout).
        self.late_answers = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the tests read counters, not access logs

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {
                k: v for k, v in headers.items() if k.lower() not in {"content-length", "host"}
            }
            headers["Content-Length"] = str(len(body))
            headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = dict(handler.headers.items())
        fault: Fault | None = None
        request: dict[str, Any] = {}
        if handler.headers.get("X-Amz-Target") == PUT_EVENTS_TARGET:
            request = json.loads(body or b"{}")
            with self._lock:
                self.put_events_calls += 1
                number = self.put_events_calls
            fault = self.plan(number, request.get("Entries", []))
        if fault is None:
            status, response_headers, payload = self._forward(method, handler.path, headers, body)
            self._reply(handler, status, payload, response_headers)
            return

        with self._lock:
            self.injected += 1
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.status is not None:
            error = {"__type": fault.error_code, "message": "injected by the test proxy"}
            self._reply(
                handler,
                fault.status,
                json.dumps(error).encode(),
                _JSON,
            )
            return
        entries = request.get("Entries", [])
        kept = [entry for index, entry in enumerate(entries) if index not in fault.failed_entries]
        results: list[dict[str, Any]] = []
        if kept:
            forwarded = json.dumps({**request, "Entries": kept}).encode()
            status, response_headers, payload = self._forward(
                method, handler.path, headers, forwarded
            )
            if status != 200:
                self._reply(handler, status, payload, response_headers)
                return
            results = list(json.loads(payload)["Entries"])
        merged = []
        for index in range(len(entries)):
            if index in fault.failed_entries:
                code, message = fault.failed_entries[index]
                merged.append({"ErrorCode": code, "ErrorMessage": message})
            else:
                merged.append(results.pop(0))
        failed = sum(1 for result in merged if "ErrorCode" in result)
        answer = json.dumps({"FailedEntryCount": failed, "Entries": merged}).encode()
        self._reply(handler, 200, answer, _JSON)

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: bytes,
        headers: list[tuple[str, str]],
    ) -> None:
        handler.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_HEADERS:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        try:
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The caller timed out and closed its connection while a delay fault held the answer:
            # what the fault is for. Counted, and the connection ends, instead of socketserver
            # printing a traceback for it.
            with self._lock:
                self.late_answers += 1
            handler.close_connection = True


@contextlib.contextmanager
def running_proxy(upstream: str, plan: FaultPlan | None = None) -> Iterator[EventBridgeFaultProxy]:
    proxy = EventBridgeFaultProxy(upstream, plan)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()

"""One persistent HTTP/1.1 connection that POSTs a body and reads the answer: PutEvents' transport.

`http.client` parses every response's headers with the `email` package and validates each request
header with regular expressions; at one request per 10 changes that was most of the relay's
sending CPU (README 'Benchmarks'). These connections write the request in one piece and read the
status line, headers and body from a buffer with one parser (`parse_response`), which is all a
JSON API call needs: Content-Length and chunked bodies, interim 1xx answers, `Connection: close`,
TLS, timeouts. `PostConnection` blocks its thread; `AsyncPostConnection` runs on an asyncio loop,
where one thread keeps every call in flight (relay/forwarder.py). Neither follows redirects,
retries or logs; callers map their errors.
"""

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import Final

# Limits against a broken or hostile peer: no line or header block may grow without bound.
MAX_LINE_BYTES: Final = 65_536
MAX_HEADERS: Final = 100
_RECEIVE_BYTES: Final = 65_536


class ProtocolError(OSError):
    """The peer's answer is not HTTP/1.x as this connection reads it (the message says how)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes


def request_bytes(path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A POST of `body` with `headers` (which must hold Host) and its Content-Length, as sent."""
    head = [f"POST {path} HTTP/1.1"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        head.append(f"{name}: {value}")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _MoreNeededError(Exception):
    """The answer is not complete in the bytes received so far (internal to `parse_response`)."""


class _Reader:
    """Reads lines and byte counts from the bytes received so far, tracking how far it got."""

    def __init__(self, data: bytearray, *, eof: bool) -> None:
        self.data = data
        self.position = 0
        self.eof = eof

    def line(self) -> bytes:
        start = self.position
        end = self.data.find(b"\n", start, start + MAX_LINE_BYTES)
        if end < 0:
            if len(self.data) - start > MAX_LINE_BYTES:
                raise ProtocolError(f"a line of the answer is over {MAX_LINE_BYTES} bytes")
            if self.eof:
                raise ProtocolError("the server closed the connection without an answer")
            raise _MoreNeededError
        self.position = end + 1
        return bytes(self.data[start : end + 1])

    def exactly(self, count: int) -> bytes:
        start = self.position
        available = len(self.data) - start
        if available < count:
            if self.eof:
                raise ProtocolError(f"the body ended after {available} of {count} bytes")
            raise _MoreNeededError
        self.position = start + count
        return bytes(self.data[start : self.position])

    def rest(self) -> bytes:
        if not self.eof:
            raise _MoreNeededError
        start, self.position = self.position, len(self.data)
        return bytes(self.data[start:])


def parse_response(data: bytearray, *, eof: bool) -> tuple[Response, bool, int] | None:
    """The answer at the start of `data`: (response, keep the connection open, bytes it took).

    None while the answer is incomplete and more may come (`eof` False). Raises `ProtocolError`
    naming what is wrong when the bytes are not an HTTP/1.x answer, or end too early.
    """
    reader = _Reader(data, eof=eof)
    try:
        response, keep_open = _read_response(reader)
    except _MoreNeededError:
        return None
    return response, keep_open, reader.position


def _read_response(reader: _Reader) -> tuple[Response, bool]:
    while True:
        status, version = _status_line(reader)
        headers = _headers(reader)
        if not 100 <= status < 200:
            break
        # An interim answer (100 Continue and the like): the real one follows.
    connection = headers.get("connection", "").lower()
    keep_open = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    if status in (204, 304):
        return Response(status, headers, b""), keep_open
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Response(status, headers, _chunked_body(reader)), keep_open
    length = headers.get("content-length")
    if length is not None:
        return Response(status, headers, reader.exactly(_length(length))), keep_open
    # No length given: the body runs until the server closes the connection.
    return Response(status, headers, reader.rest()), False


def _status_line(reader: _Reader) -> tuple[int, str]:
    line = reader.line().decode("latin-1").rstrip("\r\n")
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return int(code), version


def _headers(reader: _Reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = reader.line()
        if line in (b"\r\n", b"\n"):
            return headers
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ProtocolError(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    raise ProtocolError(f"more than {MAX_HEADERS} headers")


def _chunked_body(reader: _Reader) -> bytes:
    parts = []
    while True:
        size_text = reader.line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as error:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from error
        if size == 0:
            break
        parts.append(reader.exactly(size))
        if reader.line() not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk is not followed by a line break")
    _headers(reader)  # trailers, ignored
    return b"".join(parts)


def _length(text: str) -> int:
    if not text.isdigit():
        raise ProtocolError(f"bad Content-Length {text[:20]!r}")
    return int(text)


class _Connection:
    """Where a connection posts (host, port, TLS context) and its timeout: both kinds share it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s
        self._tls = tls


class PostConnection(_Connection):
    """POSTs to one host and port over a kept-alive connection, opened on first use.

    Not thread-safe: give each thread its own. After any error the connection is closed, and the
    next `post` opens a new one. `timeout_s` bounds the connect and each send or receive.
    """

    _socket: socket.socket | None = None  # None until the first post, and after any error

    @property
    def open(self) -> bool:
        return self._socket is not None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = None

    def _connected(self) -> socket.socket:
        if self._socket is not None:
            return self._socket
        raw = socket.create_connection((self._host, self._port), timeout=self._timeout_s)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            try:
                raw = self._tls.wrap_socket(raw, server_hostname=self._host)
            except BaseException:
                raw.close()
                raise
        self._socket = raw
        return raw

    def post(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        """Send one POST of `body` with `headers`, which must hold Host; Content-Length is added."""
        request = request_bytes(path, headers, body)
        try:
            connection = self._connected()
            connection.sendall(request)
            received = bytearray()
            while True:
                chunk = connection.recv(_RECEIVE_BYTES)
                received += chunk
                parsed = parse_response(received, eof=not chunk)
                if parsed is not None:
                    break
        except BaseException:
            self.close()
            raise
        response, keep_open, _ = parsed
        if not keep_open:
            self.close()
        return response


class _AnswerProtocol(asyncio.Protocol):
    """Collects the bytes of one answer at a time and resolves the waiting `post` with it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.waiter: asyncio.Future[tuple[Response, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        self._answer(eof=False)

    def eof_received(self) -> bool:
        self._answer(eof=True)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        else:
            self._answer(eof=True)

    def _answer(self, *, eof: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = parse_response(self.received, eof=eof)
        except ProtocolError as error:
            waiter.set_exception(error)
            return
        if parsed is not None:
            response, keep_open, used = parsed
            del self.received[:used]
            waiter.set_result((response, keep_open))


class AsyncPostConnection(_Connection):
    """`PostConnection` for an asyncio loop: many of them share one thread.

    Use it from one loop only. `timeout_s` bounds each whole `post`, connect included.
    """

    _protocol: _AnswerProtocol | None = None  # None until the first post, and after any error

    @property
    def open(self) -> bool:
        return self._protocol is not None

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def _connected(self) -> _AnswerProtocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        self.close()
        loop = asyncio.get_running_loop()
        server_hostname = self._host if self._tls is not None else None
        transport, protocol = await loop.create_connection(
            _AnswerProtocol, self._host, self._port, ssl=self._tls, server_hostname=server_hostname
        )
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._protocol = protocol
        return protocol

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        """Send one POST of `body` with `headers`, which must hold Host; Content-Length is added."""
        request = request_bytes(path, headers, body)
        try:
            async with asyncio.timeout(self._timeout_s):
                protocol = await self._connected()
                assert protocol.transport is not None
                waiter: asyncio.Future[tuple[Response, bool]]
                waiter = asyncio.get_running_loop().create_future()
                protocol.waiter = waiter
                protocol.transport.write(request)
                response, keep_open = await waiter
        except BaseException:
            self.close()
            raise
        if not keep_open:
            self.close()
        return response

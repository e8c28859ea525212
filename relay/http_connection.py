"""One persistent HTTP/1.1 connection that POSTs a body and reads the answer: PutEvents' transport.

`http.client` parses every response's headers with the `email` package and validates each request
header with regular expressions; at one request per 10 changes that was most of the relay's
sending CPU (README 'Benchmarks'). This connection writes the request in one `sendall` and reads
the status line, headers and body with a buffered reader, which is all a JSON API call needs:
Content-Length and chunked bodies, interim 1xx answers, `Connection: close`, TLS, timeouts.
It never follows redirects, never retries and never logs; callers map its errors.
"""

import io
import socket
import ssl
from dataclasses import dataclass
from typing import Final

# Limits against a broken or hostile peer: no line or header block may grow without bound.
MAX_LINE_BYTES: Final = 65_536
MAX_HEADERS: Final = 100


class ProtocolError(OSError):
    """The peer's answer is not HTTP/1.x as this connection reads it (the message says how)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes


class PostConnection:
    """POSTs to one host and port over a kept-alive connection, opened on first use.

    Not thread-safe: give each thread its own. After any error the connection is closed, and the
    next `post` opens a new one.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._address = (host, port)
        self._timeout_s = timeout_s
        self._tls = tls
        self._socket: socket.socket | None = None
        self._buffered: io.BufferedReader | None = None

    @property
    def open(self) -> bool:
        return self._socket is not None

    def close(self) -> None:
        if self._buffered is not None:
            self._buffered.close()
        if self._socket is not None:
            self._socket.close()
        self._socket = self._buffered = None

    def _connected(self) -> socket.socket:
        if self._socket is not None:
            return self._socket
        raw = socket.create_connection(self._address, timeout=self._timeout_s)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            try:
                raw = self._tls.wrap_socket(raw, server_hostname=self._address[0])
            except BaseException:
                raw.close()
                raise
        self._socket = raw
        self._buffered = raw.makefile("rb")
        return raw

    def post(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        """Send one POST of `body` with `headers`, which must hold Host; Content-Length is added."""
        head = [f"POST {path} HTTP/1.1"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            head.append(f"{name}: {value}")
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            self._connected().sendall(request)
            response, keep_open = self._read_response()
        except BaseException:
            self.close()
            raise
        if not keep_open:
            self.close()
        return response

    # Reading.

    def _reader(self) -> io.BufferedReader:
        if self._buffered is None:
            raise ProtocolError("the connection is closed")
        return self._buffered

    def _line(self) -> bytes:
        line = self._reader().readline(MAX_LINE_BYTES + 1)
        if not line:
            raise ProtocolError("the server closed the connection without an answer")
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError(f"a line of the answer is over {MAX_LINE_BYTES} bytes")
        return line

    def _read_response(self) -> tuple[Response, bool]:
        while True:
            status, version = self._status_line()
            headers = self._headers()
            if 100 <= status < 200:
                continue  # interim answer (100 Continue and the like): the real one follows
            break
        connection = headers.get("connection", "").lower()
        keep_open = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        if status in (204, 304):
            return Response(status, headers, b""), keep_open
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Response(status, headers, self._chunked_body()), keep_open
        length = headers.get("content-length")
        if length is not None:
            return Response(status, headers, self._exactly(_length(length))), keep_open
        # No length given: the body runs until the server closes the connection.
        return Response(status, headers, self._reader().read()), False

    def _status_line(self) -> tuple[int, str]:
        line = self._line().decode("latin-1").rstrip("\r\n")
        version, _, rest = line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
        return int(code), version

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise ProtocolError(f"malformed header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        raise ProtocolError(f"more than {MAX_HEADERS} headers")

    def _exactly(self, count: int) -> bytes:
        data = self._reader().read(count)
        if len(data) != count:
            raise ProtocolError(f"the body ended after {len(data)} of {count} bytes")
        return data

    def _chunked_body(self) -> bytes:
        parts = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as error:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from error
            if size == 0:
                break
            parts.append(self._exactly(size))
            if self._line() not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk is not followed by a line break")
        self._headers()  # trailers, ignored
        return b"".join(parts)


def _length(text: str) -> int:
    if not text.isdigit():
        raise ProtocolError(f"bad Content-Length {text[:20]!r}")
    return int(text)

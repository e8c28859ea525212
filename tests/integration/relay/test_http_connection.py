"""The relay's HTTP/1.1 connections, blocking and asyncio, against a scripted loopback server; the
lean client's errors.

Each server answers the requests it reads with the bytes a test gives it, so every shape of
answer an HTTP/1.1 peer may send (lengths, chunks, interim answers, closes, garbage) is exercised.
"""

import asyncio
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.http_connection import (
    MAX_HEADERS,
    AsyncPostConnection,
    PostConnection,
    ProtocolError,
    Response,
)
from relay.putevents import LeanPutEventsClient

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
HEADERS = {"host": "127.0.0.1", "Content-Type": "application/json"}


class ScriptedServer:
    """Accepts connections; answers the n-th request read with the n-th scripted answer.

    An answer of None closes the connection without a word; "hang" reads and never answers.
    """

    def __init__(self, answers: list[bytes | str | None], tls: ssl.SSLContext | None = None):
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.accepted = 0
        # What the server side saw go wrong (a client hanging up mid-request, a refused TLS
        # handshake): kept for the tests to read, so a server-side failure is never silent.
        self.errors: list[OSError] = []
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            worker = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, connection: socket.socket) -> None:
        try:
            self._answer(connection)
        except OSError as error:  # ssl.SSLError is an OSError too
            self.errors.append(error)

    def _answer(self, connection: socket.socket) -> None:
        if self._tls is not None:
            connection = self._tls.wrap_socket(connection, server_side=True)
        connection.settimeout(5)
        reader = connection.makefile("rb")
        with connection, reader:
            while self.answers and not self._stop.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                answer = self.answers.pop(0)
                if answer is None:
                    return
                if answer == "hang":
                    self._stop.wait(5)
                    return
                assert isinstance(answer, bytes)
                connection.sendall(answer)
                head = answer.split(b"\r\n\r\n", 1)[0].lower()
                if b"connection: close" in head or head.startswith(b"http/1.0"):
                    return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=6)


def _read_request(reader) -> bytes | None:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + reader.read(length)


@contextmanager
def server(*answers: bytes | str | None, tls: ssl.SSLContext | None = None) -> Iterator:
    running = ScriptedServer(list(answers), tls)
    try:
        yield running
    finally:
        running.close()


class LoopConnection:
    """An `AsyncPostConnection` driven from the test's thread by an event loop of its own."""

    def __init__(self, port: int, **options) -> None:
        self._loop = asyncio.new_event_loop()
        self._connection = AsyncPostConnection("127.0.0.1", port, **options)

    @property
    def open(self) -> bool:
        return self._connection.open

    def post(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        return self._loop.run_until_complete(self._connection.post(path, headers, body))

    def close(self) -> None:
        self._connection.close()
        if not self._loop.is_closed():
            self._loop.run_until_complete(asyncio.sleep(0))  # let the transport finish closing
            self._loop.close()


@pytest.fixture(params=["blocking", "asyncio"])
def connect(request) -> Iterator:
    """Opens connections to a port, of both kinds in turn; closes them after the test."""
    made: list[PostConnection | LoopConnection] = []

    def opened(port: int, **options) -> PostConnection | LoopConnection:
        options.setdefault("timeout_s", 5)
        if request.param == "blocking":
            made.append(PostConnection("127.0.0.1", port, **options))
        else:
            made.append(LoopConnection(port, **options))
        return made[-1]

    opened.kind = request.param  # type: ignore[attr-defined]
    yield opened
    for connection in made:
        connection.close()


def test_the_request_is_one_well_formed_post_and_the_connection_is_kept(connect):
    with server(OK, OK) as running:
        connection = connect(running.port)

        first = connection.post("/", HEADERS, b'{"Entries":[]}')
        second = connection.post("/", HEADERS, b"{}")

        assert (first.status, first.body, second.body) == (200, b"{}", b"{}")
        assert running.accepted == 1
        assert running.requests[0] == (
            b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 14\r\n\r\n{"Entries":[]}'
        )
        connection.close()


def test_chunked_bodies_with_extensions_and_trailers_are_joined(connect):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;name=value\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    with server(chunked, OK) as running:
        connection = connect(running.port)

        assert connection.post("/", HEADERS, b"{}").body == b'{"a":1}'
        assert connection.post("/", HEADERS, b"{}").body == b"{}"  # still in step afterwards
        assert running.accepted == 1
        connection.close()


def test_interim_answers_are_skipped(connect):
    with server(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as running:
        assert connect(running.port).post("/", HEADERS, b"{}").status == 200


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    ],
)
def test_a_connection_the_server_closes_is_reopened_for_the_next_post(connect, answer):
    with server(answer, OK) as running:
        connection = connect(running.port)

        connection.post("/", HEADERS, b"{}")
        assert not connection.open
        connection.post("/", HEADERS, b"{}")

        assert running.accepted == 2
        connection.close()


def test_a_body_without_length_runs_to_the_close(connect):
    with server(b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbroken backend") as running:
        connection = connect(running.port)

        response = connection.post("/", HEADERS, b"{}")

        assert (response.status, response.body) == (500, b"broken backend")
        assert not connection.open


def test_headers_are_read_case_insensitively(connect):
    answer = (
        b"HTTP/1.1 400 Bad\r\nX-Amzn-ErrorType: Throttling:http://x\r\nContent-Length: 0\r\n\r\n"
    )
    with server(answer) as running:
        response = connect(running.port).post("/", HEADERS, b"{}")

        assert response.headers["x-amzn-errortype"] == "Throttling:http://x"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (None, "closed the connection without an answer"),
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{}", "ended after 2"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n",
            f"more than {MAX_HEADERS} headers",
        ),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "over 65536 bytes"),
    ],
)
def test_a_broken_answer_is_a_protocol_error_and_the_next_post_reconnects(connect, answer, message):
    # GIVEN a server whose first answer is broken and whose second is fine
    with server(answer, OK) as running:
        connection = connect(running.port)

        # WHEN posting twice
        with pytest.raises(ProtocolError, match=message):
            connection.post("/", HEADERS, b"{}")
        second = connection.post("/", HEADERS, b"{}")

        # THEN the first fails naming what was wrong, and the second goes on a new connection
        assert second.status == 200
        assert running.accepted == 2
        connection.close()


def test_a_silent_server_times_out(connect):
    with server("hang") as running:
        connection = connect(running.port, timeout_s=0.3)

        with pytest.raises(TimeoutError):
            connection.post("/", HEADERS, b"{}")

        assert not connection.open


def test_a_refused_connection_is_an_os_error(connect):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()

    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout_s=1).post("/", HEADERS, b"{}")


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(connect):
    with server(OK) as running:
        connection = connect(running.port)

        with pytest.raises(ValueError, match="line break"):
            connection.post("/", {**HEADERS, "X-Evil": "a\r\nInjected: 1"}, b"{}")

        assert running.requests == []


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(_loopback())]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _loopback():
    import ipaddress

    return ipaddress.ip_address("127.0.0.1")


def test_tls_is_verified_against_the_given_context(connect, tmp_path):
    # GIVEN a TLS server with a certificate for 127.0.0.1
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    with server(OK, tls=server_tls) as running:
        # WHEN a client that trusts it posts, and one that does not
        answered = connect(running.port, tls=trusting).post("/", HEADERS, b"{}")
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(running.port, tls=ssl.create_default_context()).post("/", HEADERS, b"{}")

    # THEN only the trusting one is answered
    assert answered.status == 200
    # (the blocking client's refusal reaches the server as an alert, asyncio's as an early close)
    assert [isinstance(error, ssl.SSLError) for error in running.errors] == [True]


def lean_client(port: int, timeout_s: float = 5) -> LeanPutEventsClient:
    boto_client = boto3.client(
        "events", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}"
    )
    return LeanPutEventsClient(
        boto_client, credentials=Credentials("AKID", "secret"), timeout_s=timeout_s
    )


ENTRY = {"Source": "s", "DetailType": "d", "Detail": "{}"}
_ACCEPTED_BODY = b'{"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}'
ACCEPTED = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_ACCEPTED_BODY),
    _ACCEPTED_BODY,
)


class LeanCaller:
    """Calls a lean client's `put_events`, or its `put_events_async` on a loop of the caller's."""

    def __init__(self, client: LeanPutEventsClient, kind: str) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop() if kind == "asyncio" else None

    def __call__(self, entries: list[dict[str, str]]) -> dict:
        if self._loop is None:
            return self.client.put_events(Entries=entries)
        return self._loop.run_until_complete(self.client.put_events_async(Entries=entries))

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self.client.aclose())
            self._loop.close()


def test_the_lean_client_maps_answers_and_failures_to_botocore_errors(connect):
    throttled = (
        b"HTTP/1.1 400 Bad Request\r\nx-amzn-ErrorType: ThrottlingException:http://x\r\n"
        b'Content-Length: 20\r\n\r\n{"message": "slow"} '
    )
    with server(throttled, None, ACCEPTED, "hang") as running:
        put_events = LeanCaller(lean_client(running.port, timeout_s=0.5), connect.kind)

        with pytest.raises(ClientError) as throttling:
            put_events([ENTRY])
        with pytest.raises(EndpointConnectionError):
            put_events([ENTRY])
        result = put_events([ENTRY])
        with pytest.raises(ReadTimeoutError):
            put_events([ENTRY])
        put_events.close()

    assert throttling.value.response["Error"]["Code"] == "ThrottlingException"
    assert result["Entries"] == [{"EventId": "1"}]
    first = running.requests[0]
    assert b"X-Amz-Target: AWSEvents.PutEvents" in first
    assert b"Authorization: AWS4-HMAC-SHA256 Credential=AKID/" in first
    assert running.accepted == 2  # reconnected after the close only, not after the error answer


def test_async_calls_reuse_idle_connections_and_open_one_only_when_all_are_busy():
    # GIVEN a lean client's async calls on one loop
    with server(*[ACCEPTED] * 5) as running:
        client = lean_client(running.port)

        async def calls() -> list[int]:
            accepted = []
            # WHEN two calls go one after the other, then three at once, then one more
            for _ in range(2):
                await client.put_events_async(Entries=[ENTRY])
            accepted.append(running.accepted)
            await asyncio.gather(*[client.put_events_async(Entries=[ENTRY]) for _ in range(3)])
            accepted.append(running.accepted)
            await client.aclose()
            return accepted

        loop = asyncio.new_event_loop()
        try:
            accepted = loop.run_until_complete(calls())
        finally:
            loop.close()

    # THEN one connection served the sequential calls; the concurrent ones needed two more
    assert accepted == [1, 3]
    assert running.errors == []

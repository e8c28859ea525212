"""Raw HTTP/1.1 on a loopback socket, for tests of the local stand-in servers (the benchmark's
sink, the EventBridge fault proxy) that must send exactly the bytes they choose."""

import socket
from urllib.parse import urlsplit

from relay.putevents import TARGET

PUT_EVENTS_BODY = b'{"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}'


def connect(endpoint: str, *, timeout_s: float = 10) -> socket.socket:
    parts = urlsplit(endpoint)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout_s)


def put_events_request(*extra_headers: str) -> bytes:
    """One PutEvents POST of one entry, with `extra_headers` ("Name: value") after the target."""
    head = ["POST / HTTP/1.1", "Host: stand-in", f"X-Amz-Target: {TARGET}"]
    head += [*extra_headers, f"Content-Length: {len(PUT_EVENTS_BODY)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + PUT_EVENTS_BODY


def read_answer(conn: socket.socket) -> bytes:
    """One whole answer, head and Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body

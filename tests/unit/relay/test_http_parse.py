"""The HTTP/1.x answer parser both connections share, fed the bytes as they may arrive."""

import pytest

from relay.http_connection import ProtocolError, Response, parse_response, request_bytes

CHUNKED = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
)
SIZED = b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}'


def complete(received: bytearray, *, eof: bool = False) -> tuple[Response, bool, int]:
    parsed = parse_response(received, eof=eof)
    assert parsed is not None, "the answer should be complete"
    return parsed


@pytest.mark.parametrize("answer", [SIZED, CHUNKED], ids=["content-length", "chunked"])
def test_an_answer_arriving_byte_by_byte_is_incomplete_until_its_last_byte(answer):
    # GIVEN the answer's bytes received one at a time
    received = bytearray()
    results = []

    # WHEN the parser is asked after each byte but the last
    for byte in answer[:-1]:
        received.append(byte)
        results.append(parse_response(received, eof=False))
    received.append(answer[-1])

    # THEN only the last byte completes it, and it took every byte
    assert results == [None] * (len(answer) - 1)
    response, keep_open, used = complete(received)
    assert (response.status, response.body, keep_open, used) == (200, b'{"a":1}', True, len(answer))


def test_the_bytes_after_an_answer_are_left_for_the_next():
    received = bytearray(SIZED + b"HTTP/1.1 204 No Content\r\n\r\n")

    _first, _keep_open, used = complete(received)
    del received[:used]
    second, keep_open, used = complete(received)

    assert (second.status, second.body, keep_open, used) == (204, b"", True, len(received))


def test_a_body_without_length_is_complete_only_at_the_close():
    received = bytearray(b"HTTP/1.1 502 Bad Gateway\r\n\r\nupstream gone")

    assert parse_response(received, eof=False) is None
    response, keep_open, _used = complete(received, eof=True)

    assert (response.status, response.body, keep_open) == (502, b"upstream gone", False)


@pytest.mark.parametrize(
    ("received", "message"),
    [
        (b"", "closed the connection without an answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}", "ended after 2 of 9 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-", "closed the connection without an answer"),
    ],
    ids=["nothing", "short body", "cut in the headers"],
)
def test_a_close_before_the_answer_is_complete_is_a_protocol_error(received, message):
    with pytest.raises(ProtocolError, match=message):
        parse_response(bytearray(received), eof=True)


def test_a_line_that_never_ends_is_refused_before_its_end_arrives():
    with pytest.raises(ProtocolError, match="over 65536 bytes"):
        parse_response(bytearray(b"HTTP/1.1 200 " + b"x" * 70_000), eof=False)


def test_the_request_carries_its_length_and_refuses_header_injection():
    request = request_bytes("/", {"Host": "h"}, b"{}")

    assert request == b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
    with pytest.raises(ValueError, match="'X-Evil' holds a line break"):
        request_bytes("/", {"Host": "h", "X-Evil": "a\r\nInjected: 1"}, b"{}")

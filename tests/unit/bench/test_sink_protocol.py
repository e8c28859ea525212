"""The sink's HTTP side without a socket: requests parsed as its clients send them, answers built
in one piece, PutEvents told apart from the control endpoints."""

from http import HTTPStatus

import orjson
import pytest

from bench.sink import (
    JSON_CONTENT_TYPE,
    MAX_HEAD_BYTES,
    PUT_EVENTS_TARGET,
    BadRequestError,
    Request,
    Sink,
    http_response,
    parse_request,
)

ENTRY = {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "b"}


def _raw(body: bytes, *headers: str, line: str = "POST / HTTP/1.1") -> bytearray:
    head = "\r\n".join([line, "Host: sink", *headers, f"Content-Length: {len(body)}"])
    return bytearray(head.encode("latin-1") + b"\r\n\r\n" + body)


def _put_events(entries: list[dict[str, str]]) -> Request:
    body = orjson.dumps({"Entries": entries})
    return Request("POST", "/", {"x-amz-target": PUT_EVENTS_TARGET}, body)


def _status_and_body(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert f"Content-Length: {len(body)}".encode() in head
    return status, orjson.loads(body)


def test_a_whole_request_is_read_with_lower_cased_headers_and_its_length():
    raw = _raw(b'{"Entries": []}', f"X-Amz-Target: {PUT_EVENTS_TARGET}")

    parsed = parse_request(raw)

    assert parsed is not None
    request, length = parsed
    assert (request.method, request.path, request.body) == ("POST", "/", b'{"Entries": []}')
    assert request.headers["x-amz-target"] == PUT_EVENTS_TARGET
    assert length == len(raw)


def test_an_incomplete_head_or_body_waits_for_more():
    raw = _raw(b"0123456789")

    assert parse_request(raw[:20]) is None
    assert parse_request(raw[:-1]) is None


def test_two_requests_in_one_buffer_are_read_one_at_a_time():
    first, second = _raw(b"one"), _raw(b"second", line="GET /_bench/stats HTTP/1.1")
    buffer = first + second

    parsed = parse_request(buffer)
    assert parsed is not None
    del buffer[: parsed[1]]
    following = parse_request(buffer)

    assert parsed[0].body == b"one"
    assert following is not None
    assert (following[0].method, following[0].body) == ("GET", b"second")


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (_raw(b"", line="HELLO"), "not an HTTP/1.x request line"),
        (_raw(b"", "Broken header"), "malformed header line"),
        (_raw(b"", "Transfer-Encoding: chunked"), "chunked"),
        (bytearray(b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n"), "bad Content-Length"),
        (bytearray(b"x" * (MAX_HEAD_BYTES + 1)), f"over {MAX_HEAD_BYTES} bytes"),
    ],
)
def test_a_request_the_sink_cannot_read_is_refused_by_what_is_wrong(raw, named):
    with pytest.raises(BadRequestError, match=named):
        parse_request(raw)


def test_an_answer_is_one_http_11_response_with_its_length():
    response = http_response(HTTPStatus.OK, {"a": 1}, JSON_CONTENT_TYPE)

    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Type: {JSON_CONTENT_TYPE}".encode() in response
    assert _status_and_body(response) == (200, {"a": 1})


def test_put_events_is_counted_and_held_back_by_the_added_latency():
    sink = Sink(latency_s=0.025)

    response, delay_s = sink.answer(_put_events([ENTRY, ENTRY]))

    status, body = _status_and_body(response)
    assert (status, body["FailedEntryCount"], len(body["Entries"])) == (200, 0, 2)
    assert delay_s == 0.025
    assert (sink.state.requests, sink.state.entries) == (1, 2)


def test_control_endpoints_and_refusals_answer_at_once():
    sink = Sink(latency_s=0.025)
    wrong_target = Request("POST", "/", {"x-amz-target": "AWSEvents.ListRules"}, b"{}")
    arm = Request("POST", "/_bench/arm", {}, b'{"latency_ms": 25}')
    stats = Request("GET", "/_bench/stats", {}, b"")

    answers = [sink.answer(request) for request in (wrong_target, arm, stats)]

    assert [delay for _, delay in answers] == [0.0, 0.0, 0.0]
    status, body = _status_and_body(answers[0][0])
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    assert _status_and_body(answers[2][0])[1]["latency_ms"] == 25


def test_a_put_events_without_entries_is_refused_and_counted_as_rejected():
    sink = Sink(latency_s=0.0)

    response, _ = sink.answer(_put_events([]))

    status, body = _status_and_body(response)
    assert (status, body["__type"]) == (400, "ValidationException")
    assert "1 to 10 entries" in body["message"]
    assert (sink.state.rejected, sink.state.entries) == (1, 0)

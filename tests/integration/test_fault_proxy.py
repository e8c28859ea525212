"""The EventBridge fault proxy the relay's tests use: a caller that stops waiting for a delayed
answer is counted, and the proxy goes on serving."""

import http.client
import socket
import struct
from urllib.parse import urlsplit

from localdev.eventbridge_proxy import PUT_EVENTS_TARGET, Fault, running_proxy
from localdev.servers import wait_until

# Never contacted: every call below is answered by an injected fault.
_NO_UPSTREAM = "http://127.0.0.1:9"
_BODY = b'{"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}'


def _put_events_request() -> bytes:
    head = (
        "POST / HTTP/1.1\r\nHost: proxy\r\n"
        f"X-Amz-Target: {PUT_EVENTS_TARGET}\r\nContent-Length: {len(_BODY)}\r\n\r\n"
    )
    return head.encode() + _BODY


def test_an_answer_the_caller_no_longer_waits_for_is_counted_and_serving_goes_on():
    # GIVEN a proxy that holds the first call's answer back, then refuses calls at once
    def plan(call: int, _entries: list) -> Fault:
        return Fault(delay_s=0.3, status=500) if call == 1 else Fault(status=400)

    with running_proxy(_NO_UPSTREAM, plan) as proxy:
        address = urlsplit(proxy.endpoint)
        host, port = address.hostname or "127.0.0.1", address.port

        # WHEN the first caller hangs up before its answer
        with socket.create_connection((host, port), timeout=5) as caller:
            # Linger 0: the close resets the connection at once, as a client's timeout may.
            caller.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            caller.sendall(_put_events_request())
        wait_until(lambda: proxy.late_answers == 1, deadline_s=10, what="the late answer")

        # THEN the next call is still answered
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("POST", "/", body=_BODY, headers={"X-Amz-Target": PUT_EVENTS_TARGET})
            status = connection.getresponse().status
        finally:
            connection.close()

    assert status == 400
    assert proxy.late_answers == 1

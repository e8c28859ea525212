"""The EventBridge fault proxy the relay's tests use: a caller that stops waiting for a delayed
answer is counted, and the proxy goes on serving."""

import socket
import struct

from localdev.eventbridge_proxy import Fault, running_proxy
from localdev.servers import wait_until
from tests.integration.raw_http import connect, put_events_request, read_answer

# Never contacted: every call below is answered by an injected fault.
_NO_UPSTREAM = "http://127.0.0.1:9"


def test_an_answer_the_caller_no_longer_waits_for_is_counted_and_serving_goes_on():
    # GIVEN a proxy that holds the first call's answer back, then refuses calls at once
    def plan(call: int, _entries: list) -> Fault:
        return Fault(delay_s=0.3, status=500) if call == 1 else Fault(status=400)

    with running_proxy(_NO_UPSTREAM, plan) as proxy:
        # WHEN the first caller hangs up before its answer
        with connect(proxy.endpoint) as caller:
            # Linger 0: the close resets the connection at once, as a client's timeout may.
            caller.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            caller.sendall(put_events_request())
        wait_until(lambda: proxy.late_answers == 1, deadline_s=10, what="the late answer")

        # THEN the next call is still answered
        with connect(proxy.endpoint) as caller:
            caller.sendall(put_events_request())
            answer = read_answer(caller)

    assert answer.startswith(b"HTTP/1.1 400")
    assert proxy.late_answers == 1

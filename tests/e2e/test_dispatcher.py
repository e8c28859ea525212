"""The local Lambda stand-in: handler calls with a Lambda-like context, retries, dead letters.

Runs against moto_server (loopback) with small handlers, so it needs none of the real functions.
"""

import json

import boto3
import pytest

from localdev.dispatcher import (
    LOCAL_ACCOUNT,
    Dispatcher,
    LocalFunction,
    function_environment,
    lambda_event,
)
from localdev.servers import wait_until


def _queue(sqs, name):
    return sqs.create_queue(QueueName=name)["QueueUrl"]


def _event(event_id="826B0001", **detail):
    return {
        "version": "0",
        "id": "4f0e",
        "detail-type": "MongoDB Change Event",
        "source": "mongodb.changestream",
        "time": "2026-12-03T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventId": event_id,
            "wallTime": {"$date": "2026-12-03T12:00:00.000Z"},
            **detail,
        },
    }


@pytest.fixture
def sqs(aws_endpoint):
    return boto3.client("sqs")


def _function(sqs, handler, name="EchoFunction", **options):
    return LocalFunction(
        name=name,
        handler=handler,
        queue_url=_queue(sqs, f"{name}-events"),
        dlq_url=_queue(sqs, f"{name}-dlq"),
        **options,
    )


def _remaining(sqs, url):
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_handler_gets_the_event_a_lambda_context_and_its_own_environment(sqs, monkeypatch):
    # GIVEN a function with its own environment and an event in its queue
    monkeypatch.delenv("ECHO_SETTING", raising=False)
    seen = []

    def handler(event, context):
        import os

        seen.append(
            (event, context, os.environ.get("ECHO_SETTING"), context.get_remaining_time_in_millis())
        )
        return {"ok": True}

    function = _function(sqs, handler, environment={"ECHO_SETTING": "mine"}, timeout_s=5)
    sqs.send_message(QueueUrl=function.queue_url, MessageBody=json.dumps(_event()))
    dispatcher = Dispatcher(sqs, [function])

    # WHEN the dispatcher polls once
    handled = dispatcher.poll_once("EchoFunction")

    # THEN the handler ran once, with the envelope, a Lambda-like context and its environment
    assert handled == 1
    [(event, context, setting, remaining_ms)] = seen
    assert event["detail"]["eventId"] == "826B0001"
    assert event["account"] == LOCAL_ACCOUNT
    assert context.function_name == "EchoFunction"
    assert context.invoked_function_arn.endswith(":function:EchoFunction")
    assert context.memory_limit_in_mb == 256
    assert context.aws_request_id
    assert 0 < remaining_ms <= 5000
    assert setting == "mine"
    # ... the environment is the function's only while it runs, and the message is gone
    import os

    assert "ECHO_SETTING" not in os.environ
    assert _remaining(sqs, function.queue_url) == 0
    [invocation] = dispatcher.invocations
    assert invocation.ok
    assert not invocation.duplicate
    assert invocation.result == {"ok": True}
    assert invocation.latency_s is not None


def test_an_event_that_keeps_failing_is_retried_then_parked_in_the_on_failure_queue(sqs):
    # GIVEN a handler that always fails
    calls = []

    def handler(event, context):
        calls.append(event["detail"]["eventId"])
        raise RuntimeError("audit store unavailable")

    function = _function(sqs, handler)
    sqs.send_message(QueueUrl=function.queue_url, MessageBody=json.dumps(_event("826B0002")))
    dispatcher = Dispatcher(sqs, [function], max_attempts=3, retry_delays_s=(0, 0))

    # WHEN the dispatcher polls until the queue is empty
    def drained():
        dispatcher.poll_once("EchoFunction")
        return _remaining(sqs, function.queue_url) == 0

    wait_until(drained, deadline_s=20, what="event retried to exhaustion")

    # THEN it was tried three times and waits in the on-failure queue with the last error
    # (Lambda's invocation record: the event in requestPayload), not lost
    assert calls == ["826B0002"] * 3
    [letter] = dispatcher.dead_letters("EchoFunction")
    assert letter.event_id == "826B0002"
    assert letter.error_code == "RuntimeError"
    assert "audit store unavailable" in letter.error_message
    assert letter.attempts == 3
    assert [i.dead_lettered for i in dispatcher.invocations] == [False, False, True]
    record = json.loads(sqs.receive_message(QueueUrl=function.dlq_url)["Messages"][0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["responseContext"]["functionError"] == "Unhandled"


def test_a_function_may_allow_fewer_attempts_than_the_dispatcher_default(sqs):
    # GIVEN a function whose template allows no retry (MaximumRetryAttempts 0)
    calls = []

    def handler(event, context):
        calls.append(1)
        raise ValueError("bad")

    function = _function(sqs, handler, max_attempts=1)
    sqs.send_message(QueueUrl=function.queue_url, MessageBody=json.dumps(_event()))
    dispatcher = Dispatcher(sqs, [function], max_attempts=3, retry_delays_s=(0, 0))

    # WHEN it is handled once
    dispatcher.poll_once("EchoFunction")

    # THEN it went straight to the on-failure queue
    assert calls == [1]
    assert [letter.attempts for letter in dispatcher.dead_letters("EchoFunction")] == [1]


def test_a_transient_failure_is_retried_and_does_not_reach_the_dead_letter_queue(sqs):
    # GIVEN a handler that fails on its first call only
    calls = []

    def handler(event, context):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("blip")
        return "done"

    function = _function(sqs, handler)
    sqs.send_message(QueueUrl=function.queue_url, MessageBody=json.dumps(_event()))
    dispatcher = Dispatcher(sqs, [function], retry_delays_s=(0,))

    # WHEN the dispatcher runs on its own threads
    dispatcher.start()
    try:
        wait_until(lambda: _remaining(sqs, function.queue_url) == 0, deadline_s=20, what="drained")
    finally:
        dispatcher.stop()

    # THEN the second attempt succeeded and nothing was parked
    assert len(calls) == 2
    assert [i.ok for i in dispatcher.invocations] == [False, True]
    assert dispatcher.dead_letters("EchoFunction") == []


def test_redelivered_events_are_counted_as_duplicates_and_redrive_returns_parked_events(sqs):
    # GIVEN an event delivered twice, and one parked in the DLQ
    calls = []
    function = _function(sqs, lambda event, context: calls.append(event["detail"]["eventId"]))
    for _ in range(2):
        sqs.send_message(QueueUrl=function.queue_url, MessageBody=json.dumps(_event("826B0003")))
    parked = {"requestContext": {"approximateInvokeCount": 3}, "requestPayload": _event("826B0004")}
    sqs.send_message(QueueUrl=function.dlq_url, MessageBody=json.dumps(parked))
    dispatcher = Dispatcher(sqs, [function])

    # WHEN both are handled and the DLQ is redriven
    wait_until(
        lambda: dispatcher.poll_once("EchoFunction") == 0 and len(calls) == 2,
        deadline_s=10,
        what="both handled",
    )
    moved = dispatcher.redrive("EchoFunction")
    wait_until(
        lambda: dispatcher.poll_once("EchoFunction") >= 0 and len(calls) == 3,
        deadline_s=10,
        what="redriven",
    )

    # THEN the second delivery is marked as a duplicate (the handler is still called: absorbing
    # it is the function's idempotency's job) and the parked event ran again
    assert [i.duplicate for i in dispatcher.invocations] == [False, True, False]
    assert moved == 1
    assert calls == ["826B0003", "826B0003", "826B0004"]
    assert dispatcher.succeeded("EchoFunction") == {"826B0003", "826B0004"}


def test_function_environment_restores_what_was_there(monkeypatch):
    monkeypatch.setenv("KEPT", "before")
    monkeypatch.delenv("ADDED", raising=False)
    import os

    with function_environment({"KEPT": "during", "ADDED": "x"}):
        assert (os.environ["KEPT"], os.environ["ADDED"]) == ("during", "x")
    assert os.environ["KEPT"] == "before"
    assert "ADDED" not in os.environ


def test_moto_leaves_account_out_of_the_envelope_it_delivers_to_sqs(sqs):
    """moto difference: AWS puts `account` in every EventBridge event delivered to a target;
    moto 5.2's SQS delivery omits it. `lambda_event` fills it in, in local tooling only."""
    # GIVEN a bus with a rule that sends everything to a queue
    events = boto3.client("events")
    events.create_event_bus(Name="probe")
    url = _queue(sqs, "probe-target")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="all", EventBusName="probe", EventPattern=json.dumps({"source": ["probe"]})
    )
    events.put_targets(Rule="all", EventBusName="probe", Targets=[{"Id": "q", "Arn": arn}])

    # WHEN an event is put on the bus
    events.put_events(
        Entries=[{"EventBusName": "probe", "Source": "probe", "DetailType": "x", "Detail": "{}"}]
    )

    # THEN the delivered envelope lacks `account`, and the dispatcher's view of it has one
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert "account" not in json.loads(message["Body"])
    assert lambda_event(message["Body"])["account"] == LOCAL_ACCOUNT

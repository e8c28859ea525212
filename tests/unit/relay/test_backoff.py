"""The capped backoff shared by the dead-letter sink and the oversize upload, on fake waits."""

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from relay.backoff import MAX_DELAY_S, RetryStoppedError, retry_until_stored
from relay.telemetry import Stats

MESSAGE = "test write failed, retrying"


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "PutObject")


class FlakyCall:
    """Raises each of `errors` in turn, then returns "stored"; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "stored"


class FakeWait:
    """Records each delay asked for, never sleeps; says stop on the attempt named."""

    def __init__(self, stop_on: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_on = stop_on

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        return len(self.delays) == self.stop_on


def retry(call, wait, stats=None):
    return retry_until_stored(
        call,
        failure_message=MESSAGE,
        log_fields={"event_id": "e1"},
        stats=stats or Stats(),
        wait=wait,
    )


def test_a_first_success_neither_waits_nor_counts():
    stats, wait = Stats(), FakeWait()

    assert retry(FlakyCall(), wait, stats) == "stored"

    assert wait.delays == []
    assert stats.total("Retries") == 0


def test_delays_start_at_a_fifth_of_a_second_double_and_stop_growing_at_the_cap():
    # GIVEN a call that fails ten times (client and connection errors) before it succeeds
    refused = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    errors = [throttled() if n % 2 else refused for n in range(10)]
    call, wait, stats = FlakyCall(*errors), FakeWait(), Stats()

    # WHEN it is retried
    result = retry(call, wait, stats)

    # THEN it is stored on the eleventh call, each wait doubling the last until the 30 s cap
    assert result == "stored"
    assert call.calls == 11
    assert wait.delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])
    assert max(wait.delays) == MAX_DELAY_S
    assert stats.total("Retries") == 10


def test_a_stop_between_attempts_ends_the_retries_with_the_last_error():
    # GIVEN a call that would fail five times, and a wait told to stop on its third delay
    errors = [throttled() for _ in range(5)]
    call, wait, stats = FlakyCall(*errors), FakeWait(stop_on=3), Stats()

    # WHEN it is retried
    with pytest.raises(RetryStoppedError) as stopped:
        retry(call, wait, stats)

    # THEN no attempt follows the stop, and the error carries the last AWS error as its cause
    assert call.calls == 3
    assert wait.delays == pytest.approx([0.2, 0.4, 0.8])
    assert stats.total("Retries") == 3
    assert stopped.value.last_error is stopped.value.__cause__
    assert isinstance(stopped.value.last_error, ClientError)
    assert len(call.errors) == 2  # the two failures never tried


@pytest.mark.parametrize("error", [ValueError("bad body"), KeyError("Detail"), RuntimeError()])
def test_an_error_that_is_not_from_aws_propagates_at_once(error):
    call, wait, stats = FlakyCall(error), FakeWait(), Stats()

    with pytest.raises(type(error)):
        retry(call, wait, stats)

    assert call.calls == 1
    assert wait.delays == []
    assert stats.total("Retries") == 0


def test_each_failure_logs_the_fixed_message_with_the_callers_fields(caplog):
    # GIVEN a call that fails twice
    call = FlakyCall(throttled(), EndpointConnectionError(endpoint_url="http://sqs"))

    # WHEN it is retried from this test function
    retry(call, FakeWait())

    # THEN two warnings: fixed message, the caller's fields, the error and the next delay, and
    # the location is the helper's caller, not the helper
    records = [r for r in caplog.records if r.getMessage() == MESSAGE]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"]
    assert [r.event_id for r in records] == ["e1", "e1"]
    assert [r.retry_in_s for r in records] == pytest.approx([0.2, 0.4])
    assert "Throttling" in records[0].error
    assert "http://sqs" in records[1].error
    assert {r.funcName for r in records} == {"retry"}

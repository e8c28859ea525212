"""Retrying one AWS write with capped, doubling delays until it is stored or the relay stops.

For writes the relay cannot go past (a dead letter, an oversize payload). Only AWS errors are
retried; anything else propagates at once. Never sleeps by itself: the caller's `wait` is the
only pause, so a stop request ends the wait and tests run on fake clocks.
"""

from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from relay.telemetry import Stats, logger

FIRST_DELAY_S: Final = 0.2
MAX_DELAY_S: Final = 30.0

T = TypeVar("T")


class RetryStoppedError(Exception):
    """Told to stop before the write was stored; `last_error` is the AWS error it last got."""

    def __init__(self, last_error: ClientError | BotoCoreError) -> None:
        super().__init__(str(last_error))
        self.last_error = last_error


def retry_until_stored(
    call: Callable[[], T],
    *,
    failure_message: str,
    log_fields: Mapping[str, object],
    stats: Stats,
    wait: Callable[[float], bool],
) -> T:
    """Return what `call` returns, retrying it for as long as it raises an AWS error.

    After each failure: one warning (`failure_message`, then `log_fields`, `error` and
    `retry_in_s`), one `Retries`, then `wait(delay)`. `wait` returns True to stop: then
    `RetryStoppedError` is raised from the last error. Delays start at 0.2 s and double up to 30 s.
    """
    delay = FIRST_DELAY_S
    while True:
        try:
            return call()
        except (ClientError, BotoCoreError) as error:
            # stacklevel 3: the record's location names the caller (a dead-letter send, an upload).
            fields = {**log_fields, "error": str(error), "retry_in_s": delay}
            logger.warning(failure_message, extra=fields, stacklevel=3)
            stats.add("Retries")
            if wait(delay):
                raise RetryStoppedError(error) from error
            delay = min(delay * 2, MAX_DELAY_S)

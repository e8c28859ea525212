"""A local stand-in for Lambda's asynchronous invoke: SQS queue in, handler call, retries, DLQ.

moto's EventBridge cannot invoke Lambda, so locally each rule targets an SQS queue and this
dispatcher polls those queues and calls each function's real `handler` in this process, with a
Lambda-like context and the function's own environment variables. A failed event is retried
after a delay and, when every attempt failed, parked in the function's on-failure queue as an
invocation record holding the event and the error, as Lambda's async invoke does. It never drops an
event: a message leaves its queue only after a handler succeeded or the DLQ accepted it.

Development tooling only: never deployed, never imported by product code.
"""

import contextlib
import datetime as dt
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("localdev.dispatcher")

LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"
DEFAULT_MAX_ATTEMPTS = 3  # Lambda async invoke: the first try plus two retries
DEFAULT_RETRY_DELAYS_S = (1.0, 2.0)  # Lambda waits about 1 and 2 minutes; locally seconds
POLL_WAIT_S = 1

Handler = Callable[[dict[str, Any], Any], Any]

# os.environ is one per process, and each function must see only its own variables (as each
# Lambda function does), so imports and invocations take turns under this lock.
_ENVIRONMENT_LOCK = threading.RLock()


@dataclass(frozen=True)
class LambdaContext:
    """What a Lambda handler's `context` offers, enough for Powertools Logger, Metrics and
    Idempotency (`function_name`, `memory_limit_in_mb`, `invoked_function_arn`, `aws_request_id`,
    `get_remaining_time_in_millis()`)."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    timeout_s: float
    started_monotonic: float = field(default_factory=time.monotonic)
    function_version: str = "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started_monotonic
        return max(0, int((self.timeout_s - elapsed) * 1000))


@contextlib.contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Run the block with `variables` set in os.environ, restoring what was there afterwards."""
    with _ENVIRONMENT_LOCK:
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def load_handler(
    app_path: Path, module_name: str, environment: Mapping[str, str], attribute: str = "handler"
) -> Handler:
    """Import `app_path` as `module_name` (every function's module is called `app`) with the
    function's environment set, as a cold start would, and return its handler."""
    folder = str(app_path.parent)
    if folder not in sys.path:
        # The logic package sits beside app.py, as in the deployed zip.
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module_name, app_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {app_path}")
    module = importlib.util.module_from_spec(spec)
    with function_environment(environment):
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ImportError(f"{app_path} has no callable `{attribute}`")
    loaded: Handler = handler
    return loaded


@dataclass(frozen=True)
class LocalFunction:
    """One function as the dispatcher runs it: its queue, its DLQ, its handler and settings."""

    name: str
    handler: Handler
    queue_url: str
    dlq_url: str
    environment: Mapping[str, str] = field(default_factory=dict)
    memory_mb: int = 256
    timeout_s: float = 30.0
    max_attempts: int | None = None  # None: the dispatcher's default

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{self.name}"


@dataclass(frozen=True)
class Invocation:
    """The outcome of one handler call."""

    function: str
    event_id: str | None
    attempt: int
    ok: bool
    duplicate: bool
    dead_lettered: bool
    error: str | None
    result: Any
    finished_at: dt.datetime
    committed_at: dt.datetime | None

    @property
    def latency_s(self) -> float | None:
        """From the change's commit in MongoDB to the end of this handler call."""
        if self.committed_at is None:
            return None
        return (self.finished_at - self.committed_at).total_seconds()


@dataclass(frozen=True)
class DeadLetter:
    """An event parked in a function's on-failure queue, with the error of its last attempt."""

    function: str
    event: dict[str, Any]
    error_code: str
    error_message: str
    attempts: int

    @property
    def event_id(self) -> str | None:
        return _event_id(self.event)


def _event_id(event: Mapping[str, Any]) -> str | None:
    detail = event.get("detail")
    if isinstance(detail, Mapping) and isinstance(detail.get("eventId"), str):
        return str(detail["eventId"])
    return None


def _committed_at(event: Mapping[str, Any]) -> dt.datetime | None:
    """The change's `wallTime` (Extended JSON `{"$date": ISO}`), when the event has one."""
    detail = event.get("detail")
    wall = detail.get("wallTime") if isinstance(detail, Mapping) else None
    stamp = wall.get("$date") if isinstance(wall, Mapping) else None
    if not isinstance(stamp, str):
        return None
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        LOGGER.warning("event wall time unreadable; latency not measured")
        return None


def lambda_event(body: str) -> dict[str, Any]:
    """The EventBridge event Lambda would receive, from the SQS body moto delivered.

    moto leaves `account` out of the envelope it sends to SQS (AWS always sets it, and the
    contract's parser requires it); the local account id fills the gap here, in local tooling
    only. tests/e2e/test_dispatcher.py shows the difference.
    """
    event: dict[str, Any] = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("queue message is not a JSON object")
    event.setdefault("account", LOCAL_ACCOUNT)
    return event


class Dispatcher:
    """Polls each function's queue on its own thread and invokes the handler for each event."""

    def __init__(
        self,
        sqs: Any,
        functions: Sequence[LocalFunction],
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S,
        on_invocation: Callable[[Invocation], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._sqs = sqs
        self._functions = {function.name: function for function in functions}
        self._max_attempts = max_attempts
        self._retry_delays_s = tuple(retry_delays_s) or (0.0,)
        self._on_invocation = on_invocation
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._succeeded: dict[str, set[str]] = {name: set() for name in self._functions}
        self.invocations: list[Invocation] = []
        self.poll_errors = 0

    @property
    def functions(self) -> dict[str, LocalFunction]:
        return dict(self._functions)

    def start(self) -> None:
        for function in self._functions.values():
            thread = threading.Thread(
                target=self._poll_forever, args=(function,), name=f"dispatch-{function.name}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self, deadline_s: float = 10.0) -> None:
        """Stop polling; a handler call already running finishes first."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=deadline_s)
        self._threads.clear()

    def _poll_forever(self, function: LocalFunction) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(function.name, wait_s=POLL_WAIT_S)
            except Exception:
                # A poll that failed (moto restarting, a network blip) is retried; the message
                # stays in its queue, so nothing is lost.
                self.poll_errors += 1
                LOGGER.exception("queue poll failed", extra={"function": function.name})
                self._stop.wait(0.5)

    def poll_once(self, function_name: str, *, wait_s: int = 0) -> int:
        """Receive up to 10 events of one function and handle them; returns how many."""
        function = self._functions[function_name]
        response = self._sqs.receive_message(
            QueueUrl=function.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = response.get("Messages", [])
        for message in messages:
            self._handle(function, message)
        return len(messages)

    def _handle(self, function: LocalFunction, message: Mapping[str, Any]) -> None:
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        receipt = message["ReceiptHandle"]
        try:
            event = lambda_event(message["Body"])
        except ValueError as error:
            # Not JSON: no retry can help; keep it in the DLQ with the reason.
            self._dead_letter(function, message["Body"], error, attempt)
            self._sqs.delete_message(QueueUrl=function.queue_url, ReceiptHandle=receipt)
            return

        event_id = _event_id(event)
        with self._lock:
            duplicate = event_id is not None and event_id in self._succeeded[function.name]
        context = LambdaContext(
            function_name=function.name,
            memory_limit_in_mb=function.memory_mb,
            invoked_function_arn=function.arn,
            aws_request_id=str(uuid.uuid4()),
            timeout_s=function.timeout_s,
        )

        failure: Exception | None = None
        result: Any = None
        try:
            with function_environment(function.environment):
                result = function.handler(event, context)
        # Like the Lambda runtime, any exception a handler raises is a failed invocation: it is
        # recorded and retried, then dead-lettered, never swallowed.
        except Exception as error:  # noqa: BLE001
            failure = error
            LOGGER.warning(
                "handler failed",
                extra={
                    "function": function.name,
                    "event_id": event_id,
                    "attempt": attempt,
                    "error_type": type(error).__name__,
                },
            )

        attempts_allowed = function.max_attempts or self._max_attempts
        dead = failure is not None and attempt >= attempts_allowed
        if failure is None:
            with self._lock:
                if event_id is not None:
                    self._succeeded[function.name].add(event_id)
            self._sqs.delete_message(QueueUrl=function.queue_url, ReceiptHandle=receipt)
        elif dead:
            self._dead_letter(function, message["Body"], failure, attempt)
            self._sqs.delete_message(QueueUrl=function.queue_url, ReceiptHandle=receipt)
        else:
            delay = self._retry_delays_s[min(attempt, len(self._retry_delays_s)) - 1]
            self._sqs.change_message_visibility(
                QueueUrl=function.queue_url,
                ReceiptHandle=receipt,
                VisibilityTimeout=max(0, round(delay)),
            )

        self._record(
            Invocation(
                function=function.name,
                event_id=event_id,
                attempt=attempt,
                ok=failure is None,
                duplicate=duplicate,
                dead_lettered=dead,
                error=None if failure is None else _describe(failure),
                result=result,
                finished_at=dt.datetime.now(dt.UTC),
                committed_at=_committed_at(event),
            )
        )

    def _dead_letter(
        self, function: LocalFunction, body: str, error: BaseException, attempts: int
    ) -> None:
        """Park the event as Lambda's on-failure destination does: an invocation record holding
        the event (`requestPayload`) and the last error (`responsePayload`)."""
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body
        record = {
            "version": "1.0",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{function.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": payload,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {
                "errorMessage": _describe(error)[:4000],
                "errorType": type(error).__name__,
            },
        }
        self._sqs.send_message(QueueUrl=function.dlq_url, MessageBody=json.dumps(record))
        LOGGER.warning(
            "event dead-lettered", extra={"function": function.name, "attempts": attempts}
        )

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)
        if self._on_invocation is not None:
            self._on_invocation(invocation)

    def dead_letters(self, function_name: str, *, wait_s: int = 0) -> list[DeadLetter]:
        """Read (and keep) the invocation records parked in a function's on-failure queue."""
        function = self._functions[function_name]
        response = self._sqs.receive_message(
            QueueUrl=function.dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=0,
        )
        letters = []
        for message in response.get("Messages", []):
            record = json.loads(message["Body"])
            error = record.get("responsePayload") or {}
            letters.append(
                DeadLetter(
                    function=function_name,
                    event=record.get("requestPayload") or {},
                    error_code=str(error.get("errorType", "")),
                    error_message=str(error.get("errorMessage", "")),
                    attempts=int(record.get("requestContext", {}).get("approximateInvokeCount", 0)),
                )
            )
        return letters

    def redrive(self, function_name: str) -> int:
        """Send every event parked in a function's on-failure queue back to be handled again."""
        function = self._functions[function_name]
        moved = 0
        while True:
            response = self._sqs.receive_message(
                QueueUrl=function.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return moved
            for message in messages:
                event = json.loads(message["Body"]).get("requestPayload")
                self._sqs.send_message(QueueUrl=function.queue_url, MessageBody=json.dumps(event))
                self._sqs.delete_message(
                    QueueUrl=function.dlq_url, ReceiptHandle=message["ReceiptHandle"]
                )
                moved += 1

    def succeeded(self, function_name: str) -> set[str]:
        """Event ids the function has handled successfully at least once."""
        with self._lock:
            return set(self._succeeded[function_name])


def _describe(error: BaseException) -> str:
    frames = traceback.format_exception_only(type(error), error)
    return "".join(frames).strip()

"""The whole pipeline on one machine, for `make demo` and the end-to-end tests.

MongoDB is the deployment in `MONGODB_URI` or SecantusDB; AWS is moto_server. The bus, its rules
and patterns, the topics and the tables come from `template.yaml` itself (through
`localdev.template_model`), so what runs here is what deploys. Each rule's Lambda target becomes
an SQS queue that `localdev.dispatcher` drains into the function's real handler; each SNS topic
gets an SQS "inbox" standing in for its email and SMS subscribers. The relay runs as a child
process with the same code and settings as on Fargate.

Everything started here is stopped by `LocalPipeline.stop`, also after a failed start. Local
tooling only: product code never imports it.
"""

import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from localdev.dispatcher import (
    LOCAL_ACCOUNT,
    LOCAL_REGION,
    Dispatcher,
    Invocation,
    LocalFunction,
    load_handler,
)
from localdev.servers import (
    ManagedProcess,
    MongoServer,
    MotoServer,
    start_moto,
    start_secantus,
    wait_until,
)

LOGGER = logging.getLogger("localdev.pipeline")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
DATABASE = "clase"
COLLECTION = "productos"
AUDIT_COLLECTION = "audit_log"
DEFAULT_EVENT_SOURCE = "mongodb.changestream"
DEFAULT_BUS_NAME = "mongodb-changes"
RELAY_READY_DEADLINE_S = 60.0
RELAY_STREAM_OPEN_MESSAGE = "change stream open"

# Logical id -> folder, as fixed between the parts (COMMON.md).
FUNCTION_FOLDERS: dict[str, str] = {
    "StockAlertFunction": "stock_alert",
    "UpdateNotifierFunction": "update_notifier",
    "AuditWriterFunction": "audit_writer",
}


class PipelineError(RuntimeError):
    """A piece of the local pipeline could not start; the message says which and why."""

    def __init__(self, piece: str, reason: str) -> None:
        self.piece = piece
        super().__init__(f"{piece}: {reason}")


# ---------------------------------------------------------------------------------------------
# Which pieces exist


@dataclass(frozen=True)
class Piece:
    """One part of the system and whether its code is in this checkout yet."""

    name: str
    path: str
    built: bool
    production: bool

    @property
    def status(self) -> str:
        return "ready" if self.built else "not built yet"


def survey(root: Path = ROOT) -> list[Piece]:
    """What the pipeline needs, and which of it exists in this checkout."""
    pieces = [
        Piece(
            "template model",
            "localdev/template_model.py",
            (root / "localdev" / "template_model.py").exists(),
            production=False,
        ),
        Piece("relay", "relay/", (root / "relay" / "__main__.py").exists(), production=True),
    ]
    for logical_id, folder in FUNCTION_FOLDERS.items():
        app = root / "functions" / folder / "app.py"
        pieces.append(Piece(logical_id, f"functions/{folder}/app.py", app.exists(), True))
    return pieces


def missing(pieces: Sequence[Piece]) -> list[Piece]:
    return [piece for piece in pieces if not piece.built]


# ---------------------------------------------------------------------------------------------
# The template, as localdev.template_model describes it


class TargetModel(Protocol):
    @property
    def logical_id(self) -> str: ...
    @property
    def resource_type(self) -> str: ...


class RuleModel(Protocol):
    @property
    def logical_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def event_pattern(self) -> Mapping[str, Any]: ...
    @property
    def targets(self) -> Sequence[TargetModel]: ...
    @property
    def function_targets(self) -> tuple[str, ...]: ...


class KeyModel(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def attribute_type(self) -> str: ...
    @property
    def key_type(self) -> str: ...


class TableModel(Protocol):
    @property
    def logical_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def key_schema(self) -> Sequence[KeyModel]: ...
    @property
    def partition_key(self) -> str: ...


class NamedModel(Protocol):
    """A topic or a queue: a logical id, a physical name and an ARN."""

    @property
    def logical_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def arn(self) -> str: ...


class FunctionModel(Protocol):
    @property
    def logical_id(self) -> str: ...
    @property
    def environment(self) -> Mapping[str, str]: ...


class TemplateModelView(Protocol):
    """What the pipeline reads of `localdev.template_model.TemplateModel`."""

    @property
    def parameters(self) -> Mapping[str, str]: ...
    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def event_bus_name(self) -> str: ...
    @property
    def event_source(self) -> str: ...
    @property
    def rules(self) -> Sequence[RuleModel]: ...
    @property
    def tables(self) -> Sequence[TableModel]: ...
    @property
    def topics(self) -> Sequence[NamedModel]: ...
    @property
    def queues(self) -> Sequence[NamedModel]: ...
    @property
    def functions(self) -> Sequence[FunctionModel]: ...


def load_model(path: Path, parameters: Mapping[str, str]) -> TemplateModelView:
    """`localdev.template_model.load_template`, imported late: it is another engineer's part."""
    from localdev import template_model  # type: ignore[attr-defined,unused-ignore]

    model: TemplateModelView = template_model.load_template(path, dict(parameters))
    return model


# ---------------------------------------------------------------------------------------------
# What the pipeline observes: SNS deliveries, audit records, events on the bus


@dataclass(frozen=True)
class Reaction:
    """Something a function did that a person would see: an alert, a notification, a record."""

    kind: str  # "alert" | "notification" | "audit" | "operations" (stream gaps)
    received_at: dt.datetime
    text: str
    subject: str | None = None
    email: str | None = None
    sms: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] = field(default_factory=dict)

    def mentions(self, needle: str) -> bool:
        haystack = [self.text, self.subject or "", self.email or "", self.sms or ""]
        haystack.append(json.dumps(self.attributes, default=str))
        haystack.append(json.dumps(self.record, default=str))
        return any(needle in part for part in haystack)


class SnsPublishTap:
    """Keeps what each SNS Publish call in this process asked for, by MessageId.

    An SQS inbox receives only the `default` text of a JSON-structured message (as on AWS), so
    the email and SMS variants are read from the publish request itself. Registered on boto3's
    default session, so it sees every client the in-process functions create afterwards.
    """

    UNIQUE_ID = "localdev-sns-publish-tap"

    def __init__(self) -> None:
        self._published: dict[str, Mapping[str, Any]] = {}
        self._recorded = threading.Condition()
        self._created_session = False

    def install(self) -> None:
        self._created_session = boto3.DEFAULT_SESSION is None
        if self._created_session:
            boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        events = boto3.DEFAULT_SESSION.events
        events.register(
            "before-parameter-build.sns.Publish", self._remember, unique_id=self.UNIQUE_ID
        )
        events.register("after-call.sns.Publish", self._record, unique_id=self.UNIQUE_ID + "-2")

    def uninstall(self) -> None:
        if boto3.DEFAULT_SESSION is not None:
            events = boto3.DEFAULT_SESSION.events
            events.unregister("before-parameter-build.sns.Publish", unique_id=self.UNIQUE_ID)
            events.unregister("after-call.sns.Publish", unique_id=self.UNIQUE_ID + "-2")
        if self._created_session:
            # The session cached moto's credentials: forget it, as before the pipeline ran.
            boto3.DEFAULT_SESSION = None
            self._created_session = False

    def _remember(self, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[self.UNIQUE_ID] = dict(params)

    def _record(self, parsed: Mapping[str, Any], context: Mapping[str, Any], **_: Any) -> None:
        params = context.get(self.UNIQUE_ID)
        message_id = parsed.get("MessageId")
        if params is not None and isinstance(message_id, str):
            with self._recorded:
                self._published[message_id] = params
                self._recorded.notify_all()

    def published(self, message_id: str, wait_s: float = 2.0) -> Mapping[str, Any] | None:
        """The request of a publish; SQS may deliver before the publish call has returned, so
        wait a little for it."""
        with self._recorded:
            self._recorded.wait_for(lambda: message_id in self._published, timeout=wait_s)
            return self._published.get(message_id)


@dataclass
class BusTally:
    """Every change event that reached the bus, counted by a local catch-all rule."""

    deliveries: int = 0
    event_ids: set[str] = field(default_factory=set)

    @property
    def forwarded(self) -> int:
        return len(self.event_ids)

    @property
    def resent(self) -> int:
        """Events the relay put on the bus more than once (at-least-once after a restart)."""
        return self.deliveries - len(self.event_ids)


class ReactionCollector:
    """Drains the SNS inboxes, the bus tap and the audit collection's changes, on threads."""

    def __init__(
        self,
        sqs: Any,
        inboxes: Mapping[str, str],
        tap_queue_url: str,
        audit_collection: Any,
        publish_tap: SnsPublishTap,
        on_reaction: Callable[[Reaction], None] | None = None,
    ) -> None:
        self._sqs = sqs
        self._inboxes = dict(inboxes)
        self._tap_queue_url = tap_queue_url
        self._audit = audit_collection
        self._publish_tap = publish_tap
        self._on_reaction = on_reaction
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.reactions: list[Reaction] = []
        self.bus = BusTally()
        self.errors = 0
        self.live: queue.Queue[Reaction] = queue.Queue()
        self._audit_stream: Any = None

    def start(self) -> None:
        # The audit stream opens here, before any scenario write, so no record is missed.
        self._audit_stream = self._audit.watch([{"$match": {"operationType": "insert"}}])
        targets: list[tuple[str, Callable[[], None]]] = [("audit", self._watch_audit)]
        targets.append(("bus-tap", self._drain_tap))
        for kind, url in self._inboxes.items():
            targets.append((f"inbox-{kind}", functools.partial(self._drain_inbox, kind, url)))
        for name, target in targets:
            thread = threading.Thread(target=self._guarded(name, target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self._audit_stream is not None:
            with contextlib.suppress(PyMongoError):
                self._audit_stream.close()

    def _guarded(self, name: str, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    loop()
                except Exception:
                    # Keep observing: a failed poll is retried; the message stays queued.
                    self.errors += 1
                    LOGGER.exception("reaction poll failed", extra={"poller": name})
                    self._stop.wait(0.5)

        return run

    def _add(self, reaction: Reaction) -> None:
        with self._lock:
            self.reactions.append(reaction)
        self.live.put(reaction)
        if self._on_reaction is not None:
            self._on_reaction(reaction)

    def _drain_inbox(self, kind: str, url: str) -> None:
        response = self._sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            envelope = json.loads(message["Body"])
            published = self._publish_tap.published(envelope.get("MessageId", "")) or {}
            texts = _structured_texts(published)
            attributes = {
                name: value.get("Value")
                for name, value in envelope.get("MessageAttributes", {}).items()
            }
            self._add(
                Reaction(
                    kind=kind,
                    received_at=dt.datetime.now(dt.UTC),
                    text=str(envelope.get("Message", "")),
                    subject=envelope.get("Subject"),
                    email=texts.get("email"),
                    sms=texts.get("sms"),
                    attributes=attributes,
                )
            )
            self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def _drain_tap(self) -> None:
        response = self._sqs.receive_message(
            QueueUrl=self._tap_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            detail = json.loads(message["Body"]).get("detail", {})
            with self._lock:
                self.bus.deliveries += 1
                if isinstance(detail, dict) and isinstance(detail.get("eventId"), str):
                    self.bus.event_ids.add(detail["eventId"])
            self._sqs.delete_message(
                QueueUrl=self._tap_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )

    def _watch_audit(self) -> None:
        change = self._audit_stream.try_next()
        if change is None:
            self._stop.wait(0.05)
            return
        record = change.get("fullDocument") or {}
        self._add(
            Reaction(
                kind="audit",
                received_at=dt.datetime.now(dt.UTC),
                text=str(record.get("operationType", "")),
                record=record,
            )
        )

    def of_kind(self, kind: str) -> list[Reaction]:
        with self._lock:
            return [reaction for reaction in self.reactions if reaction.kind == kind]


def _structured_texts(published: Mapping[str, Any]) -> dict[str, str]:
    """The per-protocol texts of a `MessageStructure=json` publish (empty when plain)."""
    if published.get("MessageStructure") != "json":
        return {}
    try:
        texts = json.loads(str(published.get("Message", "")))
    except ValueError:
        LOGGER.warning("structured sns message is not json")
        return {}
    return {str(key): str(value) for key, value in texts.items()} if isinstance(texts, dict) else {}


# ---------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class PipelineConfig:
    """What a local run uses; the defaults are the demo's."""

    mongodb_uri: str | None = None  # None: start SecantusDB
    template_path: Path = TEMPLATE_PATH
    parameters: Mapping[str, str] = field(default_factory=dict)
    relay_id: str = "local-demo"
    # None: the template's POWERTOOLS_LOG_LEVEL. Powertools loggers are per service name and
    # process-wide, so a level set here outlives the pipeline in the same process.
    function_log_level: str | None = None
    relay_log_level: str = "INFO"
    max_attempts: int | None = None  # None: the template's MaximumRetryAttempts + 1
    retry_delays_s: Sequence[float] = (0.5, 1.0)
    function_environment: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    relay_environment: Mapping[str, str] = field(default_factory=dict)


@dataclass
class LocalResources:
    """Names, URLs and ARNs of what was created in moto_server from the template."""

    bus_name: str
    event_source: str
    model: TemplateModelView
    queues: dict[str, str] = field(default_factory=dict)  # logical id -> URL (template queues)
    function_queues: dict[str, str] = field(default_factory=dict)  # function -> its rule's queue
    function_dlqs: dict[str, str] = field(default_factory=dict)  # function -> on-failure queue
    function_attempts: dict[str, int] = field(default_factory=dict)
    inboxes: dict[str, str] = field(default_factory=dict)  # reaction kind -> queue URL
    tables: dict[str, str] = field(default_factory=dict)  # partition key name -> table name
    tap_queue_url: str = ""
    relay_dlq_url: str = ""


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


# Which reaction each topic carries, by the function variable that names it.
TOPIC_KINDS = {"ALERT_TOPIC_ARN": "alert", "CHANGES_TOPIC_ARN": "notification"}


class LocalPipeline:
    """Start with `start()` (or `with LocalPipeline(...) as pipeline:`), stop with `stop()`."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        on_reaction: Callable[[Reaction], None] | None = None,
        on_invocation: Callable[[Invocation], None] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.pieces = survey()
        self._on_reaction = on_reaction
        self._on_invocation = on_invocation
        self._progress = progress or (lambda _message: None)
        self._workdir = Path(tempfile.mkdtemp(prefix="mcr-local-"))
        self.mongo_server: MongoServer | None = None
        self.moto: MotoServer | None = None
        self.mongo_uri = ""
        self.mongo: MongoClient[dict[str, Any]] | None = None
        self.resources: LocalResources | None = None
        self.dispatcher: Dispatcher | None = None
        # Modules of the functions loaded in-process, to end their containers on stop.
        self._function_modules: list[str] = []
        self.collector: ReactionCollector | None = None
        self.relay: ManagedProcess | None = None
        self.publish_tap = SnsPublishTap()
        self._aws_environment: dict[str, str] = {}
        self._saved_environment: dict[str, str | None] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> "LocalPipeline":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def complete(self) -> bool:
        return not missing(self.pieces)

    def built(self, name: str) -> bool:
        return any(piece.name == name and piece.built for piece in self.pieces)

    def start(self) -> None:
        """Start every piece that exists, in order; on any failure stop what started, and raise
        `PipelineError` naming the piece."""
        try:
            self._start_mongo()
            self._start_moto()
            self._prepare_collection()
            if self.built("template model"):
                self._create_resources()
                self._start_functions()
                self._start_collector()
                if self.built("relay"):
                    self.start_relay()
            else:
                self._progress(
                    "template model not built yet: no bus, rules, topics or tables, "
                    "so the relay and the functions are not started"
                )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything this pipeline started, newest first. Safe to call twice."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("relay", self._stop_relay),
            ("dispatcher", self._stop_dispatcher),
            ("collector", self._stop_collector),
            ("mongo client", self._close_mongo),
            ("moto_server", self._stop_moto),
            ("SecantusDB", self._stop_mongo),
            ("environment", self._restore_environment),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:
                LOGGER.exception("stop step failed", extra={"step": name})
        self.publish_tap.uninstall()
        with contextlib.suppress(OSError):
            for leftover in self._workdir.iterdir():
                leftover.unlink()
            self._workdir.rmdir()

    # -- MongoDB ------------------------------------------------------------------------------

    def _start_mongo(self) -> None:
        if self.config.mongodb_uri:
            self.mongo_uri = self.config.mongodb_uri
            self._progress(f"MongoDB: using MONGODB_URI ({_redact(self.mongo_uri)})")
        else:
            try:
                self.mongo_server = start_secantus(test_commands=True)
            except Exception as error:
                raise PipelineError("SecantusDB (local MongoDB)", str(error)) from error
            self.mongo_uri = self.mongo_server.uri
            self._progress(f"MongoDB: SecantusDB (local stand-in) at {self.mongo_uri}")
        self.mongo = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=10_000, tz_aware=True)
        try:
            self.mongo.admin.command("ping")
        except PyMongoError as error:
            raise PipelineError(
                "MongoDB", f"no answer at {_redact(self.mongo_uri)}: {error}"
            ) from error

    def _prepare_collection(self) -> None:
        """`clase.productos` with pre-images on, so updates can show old -> new."""
        assert self.mongo is not None
        database = self.mongo[DATABASE]
        pre_images = {"enabled": True}
        try:
            if COLLECTION in database.list_collection_names():
                database.command(
                    {"collMod": COLLECTION, "changeStreamPreAndPostImages": pre_images}
                )
            else:
                database.create_collection(COLLECTION, changeStreamPreAndPostImages=pre_images)
        except PyMongoError as error:
            raise PipelineError(
                "MongoDB", f"cannot enable pre-images on {DATABASE}.{COLLECTION}: {error}"
            ) from error

    def _close_mongo(self) -> None:
        if self.mongo is not None:
            self.mongo.close()
            self.mongo = None

    def _stop_mongo(self) -> None:
        if self.mongo_server is not None:
            self.mongo_server.stop()
            self.mongo_server = None

    # -- AWS ----------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        try:
            self.moto = start_moto()
        except Exception as error:
            raise PipelineError("moto_server (local AWS)", str(error)) from error
        self._aws_environment = {
            "AWS_ENDPOINT_URL": self.moto.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_REGION": LOCAL_REGION,
        }
        # This process's own clients (and the in-process functions) talk to moto_server only.
        for name, value in self._aws_environment.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        self._saved_environment.setdefault("AWS_PROFILE", os.environ.pop("AWS_PROFILE", None))
        self._progress(f"AWS: moto_server (local stand-in) at {self.moto.endpoint}")

    def _restore_environment(self) -> None:
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()

    def _stop_moto(self) -> None:
        if self.moto is not None:
            self.moto.stop()
            self.moto = None

    def client(self, service: str) -> Any:
        assert self.moto is not None, "moto_server is not running"
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.moto.endpoint,
            region_name=LOCAL_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def _create_resources(self) -> None:
        try:
            model = load_model(self.config.template_path, self.config.parameters)
        except Exception as error:
            raise PipelineError("template model", f"cannot read template.yaml: {error}") from error
        try:
            self.resources = self._build(model)
        except Exception as error:
            raise PipelineError(
                "moto_server (local AWS)", f"creating resources: {error}"
            ) from error

    def _build(self, model: TemplateModelView) -> LocalResources:
        sqs, events = self.client("sqs"), self.client("events")
        sns, dynamodb = self.client("sns"), self.client("dynamodb")
        resources = LocalResources(model.event_bus_name, model.event_source, model)
        events.create_event_bus(Name=model.event_bus_name)

        # The template's queues (dead-letter queues, on-failure destinations) under their names.
        queue_urls_by_arn: dict[str, str] = {}
        for template_queue in model.queues:
            url = sqs.create_queue(QueueName=template_queue.name)["QueueUrl"]
            resources.queues[template_queue.logical_id] = url
            queue_urls_by_arn[template_queue.arn] = url

        # Topics under their template names (so the ARNs in the functions' environment are
        # right), each with an SQS inbox standing in for its email and SMS subscribers.
        kind_of_topic = {
            arn: TOPIC_KINDS[name]
            for function in model.functions
            for name, arn in function.environment.items()
            if name in TOPIC_KINDS
        }
        topic_inbox: dict[str, str] = {}
        for topic in model.topics:
            arn = sns.create_topic(Name=topic.name)["TopicArn"]
            inbox = sqs.create_queue(QueueName=f"{topic.name}-inbox")["QueueUrl"]
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=_queue_arn(sqs, inbox))
            resources.inboxes[kind_of_topic.get(topic.arn, "operations")] = inbox
            topic_inbox[topic.logical_id] = inbox

        # Each rule as the template writes it. A Lambda target becomes the function's queue and
        # an SNS target the topic's inbox: moto's EventBridge delivers to neither.
        for rule in model.rules:
            targets = []
            for target in rule.targets:
                if target.logical_id in FUNCTION_FOLDERS:
                    url = self._function_queue(sqs, resources, model, target.logical_id)
                elif target.logical_id in topic_inbox:
                    url = topic_inbox[target.logical_id]
                else:
                    self._progress(f"rule {rule.logical_id}: {target.logical_id} not run locally")
                    continue
                targets.append({"Id": target.logical_id, "Arn": _queue_arn(sqs, url)})
            events.put_rule(
                Name=rule.name,
                EventBusName=model.event_bus_name,
                EventPattern=json.dumps(rule.event_pattern),
            )
            if targets:
                events.put_targets(
                    Rule=rule.name, EventBusName=model.event_bus_name, Targets=targets
                )

        # A local catch-all rule (not in the template) counts what the relay put on the bus.
        tap = sqs.create_queue(QueueName="local-bus-tap")["QueueUrl"]
        resources.tap_queue_url = tap
        events.put_rule(
            Name="local-bus-tap",
            EventBusName=model.event_bus_name,
            EventPattern=json.dumps({"source": [model.event_source]}),
        )
        events.put_targets(
            Rule="local-bus-tap",
            EventBusName=model.event_bus_name,
            Targets=[{"Id": "tap", "Arn": _queue_arn(sqs, tap)}],
        )

        for table in model.tables:
            dynamodb.create_table(
                TableName=table.name,
                KeySchema=[
                    {"AttributeName": k.name, "KeyType": k.key_type} for k in table.key_schema
                ],
                AttributeDefinitions=[
                    {"AttributeName": k.name, "AttributeType": k.attribute_type}
                    for k in table.key_schema
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            resources.tables[table.partition_key] = table.name
        if "relayId" not in resources.tables:
            raise PipelineError("template model", "no table keyed by relayId for checkpoints")
        relay_dlq = resources.queues.get("RelayDeadLetterQueue")
        resources.relay_dlq_url = relay_dlq or sqs.create_queue(QueueName="relay-dlq")["QueueUrl"]
        self._progress(
            f"AWS resources from template.yaml: bus {model.event_bus_name}, "
            f"{len(model.rules)} rules, {len(model.topics)} topics, {len(model.tables)} tables, "
            f"{len(model.queues)} queues"
        )
        return resources

    def _function_queue(
        self, sqs: Any, resources: LocalResources, model: TemplateModelView, function: str
    ) -> str:
        """The queue standing in for a function's async invoke, and its on-failure queue."""
        if function in resources.function_queues:
            return resources.function_queues[function]
        url: str = sqs.create_queue(QueueName=f"local-{function}-invoke")["QueueUrl"]
        resources.function_queues[function] = url
        invoke = (
            model.resources.get(function, {}).get("Properties", {}).get("EventInvokeConfig", {})
        )
        retries = int(invoke.get("MaximumRetryAttempts", 2))
        resources.function_attempts[function] = retries + 1
        destination = invoke.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        by_arn = {queue.arn: queue.logical_id for queue in model.queues}
        if isinstance(destination, str) and destination in by_arn:
            resources.function_dlqs[function] = resources.queues[by_arn[destination]]
        else:
            dlq = sqs.create_queue(QueueName=f"local-{function}-failures")["QueueUrl"]
            resources.function_dlqs[function] = dlq
        return url

    # -- functions ----------------------------------------------------------------------------

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment the template gives a function, with local-only changes on top."""
        resources = self.resources
        assert resources is not None
        declared = {f.logical_id: f.environment for f in resources.model.functions}
        environment = {
            **declared.get(logical_id, {}),
            **self._aws_environment,
            # No X-Ray daemon here.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        if self.config.function_log_level is not None:
            environment["POWERTOOLS_LOG_LEVEL"] = self.config.function_log_level
        if logical_id == "AuditWriterFunction":
            # On AWS the URI comes from Secrets Manager; locally it is given directly.
            environment.pop("MONGODB_URI_SECRET_ARN", None)
            environment["MONGODB_URI"] = self.mongo_uri
        environment.update(self.config.function_environment.get(logical_id, {}))
        return environment

    def _start_functions(self) -> None:
        resources = self.resources
        assert resources is not None
        self.publish_tap.install()
        functions = []
        for logical_id, folder in FUNCTION_FOLDERS.items():
            if not self.built(logical_id) or logical_id not in resources.function_queues:
                continue
            environment = self.function_environment(logical_id)
            app = ROOT / "functions" / folder / "app.py"
            try:
                module_name = f"local_{folder}_app"
                handler = load_handler(app, module_name, environment)
            except Exception as error:
                raise PipelineError(logical_id, f"cold start failed: {error!r}") from error
            self._function_modules.append(module_name)
            functions.append(
                LocalFunction(
                    name=logical_id,
                    handler=handler,
                    queue_url=resources.function_queues[logical_id],
                    dlq_url=resources.function_dlqs[logical_id],
                    environment=environment,
                    max_attempts=self.config.max_attempts
                    or resources.function_attempts.get(logical_id),
                )
            )
        self.dispatcher = Dispatcher(
            self.client("sqs"),
            functions,
            retry_delays_s=self.config.retry_delays_s,
            on_invocation=self._on_invocation,
        )
        self.dispatcher.start()
        names = ", ".join(function.name for function in functions) or "none"
        self._progress(f"functions (production code, in-process): {names}")

    def _stop_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher = None
        # The containers end: a function that opened its own connections (the audit writer's
        # MongoClient) releases them in its `shutdown`, so no client outlives the pipeline.
        while self._function_modules:
            module = sys.modules.pop(self._function_modules.pop(), None)
            shutdown = getattr(module, "shutdown", None)
            if callable(shutdown):
                shutdown()

    def _start_collector(self) -> None:
        resources = self.resources
        assert resources is not None
        assert self.mongo is not None
        self.collector = ReactionCollector(
            self.client("sqs"),
            resources.inboxes,
            resources.tap_queue_url,
            self.mongo[DATABASE][AUDIT_COLLECTION],
            self.publish_tap,
            on_reaction=self._on_reaction,
        )
        self.collector.start()

    def _stop_collector(self) -> None:
        if self.collector is not None:
            self.collector.stop()
            self.collector = None

    # -- relay --------------------------------------------------------------------------------

    @property
    def health_file(self) -> Path:
        return self._workdir / "relay-health.json"

    def relay_environment(self) -> dict[str, str]:
        resources = self.resources
        assert resources is not None
        environment = {
            name: value
            for name, value in os.environ.items()
            if name in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"}
        }
        environment.update(self._aws_environment)
        environment.update(
            {
                "MONGODB_URI": self.mongo_uri,
                "WATCH_DATABASE": resources.model.parameters.get("WatchDatabase", DATABASE),
                "WATCH_COLLECTIONS": resources.model.parameters.get("WatchCollections", COLLECTION),
                "EVENT_BUS_NAME": resources.bus_name,
                "EVENT_SOURCE": resources.event_source,
                "CHECKPOINT_TABLE": resources.tables["relayId"],
                "RELAY_ID": self.config.relay_id,
                # Pre-images on, so update notifications can show old -> new.
                "FULL_DOCUMENT": "updateLookup",
                "FULL_DOCUMENT_BEFORE_CHANGE": "whenAvailable",
                "DLQ_QUEUE_URL": resources.relay_dlq_url,
                "HEALTH_FILE": str(self.health_file),
                "POWERTOOLS_LOG_LEVEL": self.config.relay_log_level,
                "POWERTOOLS_SERVICE_NAME": "relay",
                "PYTHONUNBUFFERED": "1",
            }
        )
        environment.update(self.config.relay_environment)
        return environment

    def start_relay(self) -> None:
        """Start `python -m relay run` and wait until it reports that it is streaming."""
        self.health_file.unlink(missing_ok=True)
        relay = ManagedProcess(
            "relay", [sys.executable, "-m", "relay", "run"], self.relay_environment()
        )
        relay.start()
        self.relay = relay

        def streaming() -> bool:
            if not relay.running:
                return True
            # The relay logs this fixed message once its change stream is open; the health file
            # says the same, but only on its next tick.
            opened = RELAY_STREAM_OPEN_MESSAGE in relay.output_tail(200)
            return opened or _health_state(self.health_file) == "streaming"

        try:
            wait_until(streaming, deadline_s=RELAY_READY_DEADLINE_S, what="relay streaming")
        except TimeoutError as error:
            tail = relay.output_tail()
            raise PipelineError("relay", f"{error}; its last output:\n{tail}") from error
        if not relay.running:
            code = relay.process.returncode if relay.process else "?"
            raise PipelineError("relay", f"exited with code {code}:\n{relay.output_tail()}")
        self._progress("relay (production code) streaming clase.productos to the bus")

    def kill_relay(self) -> None:
        """SIGKILL the relay: a crash, with no chance to flush or checkpoint."""
        if self.relay is not None:
            self.relay.kill()

    def _stop_relay(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None

    def relay_output(self, lines: int = 40) -> str:
        return "" if self.relay is None else self.relay.output_tail(lines)

    # -- waiting ------------------------------------------------------------------------------

    def wait_for(self, check: Callable[[], bool], *, deadline_s: float, what: str) -> None:
        """`wait_until`, failing early with the relay's output if the relay died meanwhile."""

        def done_or_relay_dead() -> bool:
            if self.relay is not None and not self.relay.running:
                raise PipelineError(
                    "relay", f"exited while waiting for {what}:\n{self.relay_output()}"
                )
            return check()

        wait_until(done_or_relay_dead, deadline_s=deadline_s, what=what)


def _health_state(path: Path) -> str | None:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    state = body.get("state") if isinstance(body, dict) else None
    return state if isinstance(state, str) else None


def _redact(uri: str) -> str:
    """A URI safe to print: credentials replaced."""
    scheme, _, rest = uri.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}"


@contextlib.contextmanager
def running_pipeline(
    config: PipelineConfig | None = None, **options: Any
) -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(config, **options)
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


__all__ = [
    "COLLECTION",
    "DATABASE",
    "LOCAL_ACCOUNT",
    "BusTally",
    "LocalPipeline",
    "LocalResources",
    "Piece",
    "PipelineConfig",
    "PipelineError",
    "Reaction",
    "ReactionCollector",
    "percentile",
    "running_pipeline",
    "survey",
]

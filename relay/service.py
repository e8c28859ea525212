"""The relay service: hold the change stream and forward every change to EventBridge, at least once.

Programmatic entry point (the CLI, the tests and the benchmark all use it)::

    from relay.service import Relay
    from relay.settings import RelaySettings, SettingsError

    relay = Relay(RelaySettings.from_env(os.environ))   # clients built from settings, or pass
    code = relay.run()      # blocks until stop(), a fatal condition, or a halt; returns exit code
    relay.stop()            # from another thread or a signal handler: graceful, within deadline

Clients are swappable: `Relay(settings, mongo=..., events=..., dynamodb=..., sqs=..., s3=...,
checkpoint_store=...)`; the ones in use are `relay.clients` (a `RelayClients`, as the backfill
builds them too). `relay.stats.totals()` gives the counters (EventsForwarded, ...).
The stream is read ahead on one thread and encoded on this one; sending runs on one asyncio loop
thread, with up to MAX_IN_FLIGHT_REQUESTS calls in flight; the checkpoint, metrics, health and
lease each run on a small background thread. Never logs bodies.
"""

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import boto3
from botocore.config import Config
from bson import Timestamp
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from change_contract import ejson, encode_gap, entry_size
from relay.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    DynamoDBCheckpointStore,
    MongoCheckpointStore,
    Position,
    log_loaded,
)
from relay.deadletter import DeadLetterSink, LoggingDeadLetterSink, SqsDeadLetterSink
from relay.encoder import ChangeEncoder, OffloadInterruptedError
from relay.forwarder import Forwarder, ForwarderOptions, Item
from relay.lease import Lease, LeaseKeeper
from relay.prefetch import PrefetchedStream
from relay.putevents import LeanPutEventsClient
from relay.settings import RelaySettings, SettingsError
from relay.stream import make_client, open_stream
from relay.telemetry import HealthFile, MetricsEmitter, Stats, Ticker, logger

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_CONFIG: Final = 2
EXIT_HALTED: Final = 3
EXIT_HISTORY_LOST: Final = 4
EXIT_LEASE_LOST: Final = 5
EXIT_INVALIDATED: Final = 6
EXIT_STOP_DEADLINE: Final = 7

HISTORY_LOST_CODE: Final = 286
# Server errors no reopening will cure: stop with a clear message instead of looping.
FATAL_CODES: Final = frozenset({13, 18, 260, 40573})

Outcome = Literal["stopped", "halted", "invalidated", "closed"]


def aws_client(service: str, *, timeout_s: float = 10.0, pool: int = 10, **options: Any) -> Any:
    """A boto3 client with explicit timeouts; endpoint and credentials from the AWS variables."""
    config = Config(
        connect_timeout=min(timeout_s, 5.0),
        read_timeout=timeout_s,
        max_pool_connections=pool,
        retries={"mode": "standard", "total_max_attempts": options.pop("attempts", 3)},
        **options,
    )
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def events_client(settings: RelaySettings) -> Any:
    """The PutEvents client: the lean one (relay/putevents.py) unless PUT_EVENTS_CLIENT=botocore.

    The forwarder retries each failed entry itself (logged and counted), so botocore does not;
    parameter validation is off because the entries come from the contract, already valid. The
    boto3 client also resolves endpoint, region and credentials for the lean client.

    Speed (README 'Latest figures'): on the shared benchmark machine the relay keeps pace with the
    raw read (1.0-1.1 of its rate with the 0 ms sink) and meets the 60 µs CPU target with both
    sinks: 19.5-23 µs a change at 0 ms, 27.5-33.5 at 25 ms, on the evening machine of 2026-12-04.
    Its absolute cost follows the machine: relative to the raw read's own CPU it is 2.6-3.0x at
    0 ms and 3.6-4.5x at 25 ms, so on the slower stretches seen the same day (the raw read at
    twice the cost) the 25 ms figure would be about the target. Beside SecantusDB and the sink,
    the read-ahead costs ~3-4 µs a change (the token read without inflating the change:
    `ChangeDocument`), the detail ~7 (fastejson renders the content from the BSON bytes), and
    the forwarder and sending the rest: a tenth of a request's body, signature, syscalls and
    answer, most of it the sender loop's Python, which runs colder with the 25 ms sink (it
    sleeps between answers). Decoding whole batches to dicts in pymongo would save a call per
    change, but one change with invalid UTF-8 would then fail its whole batch, so changes stay
    raw.
    """
    client = aws_client(
        "events",
        timeout_s=settings.put_events_timeout_seconds,
        pool=settings.max_in_flight_requests + 2,
        attempts=1,
        parameter_validation=False,
    )
    if settings.put_events_client == "botocore":
        return client
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise SettingsError(
            "AWS_ACCESS_KEY_ID", "no AWS credentials found (none in the environment, no task role)"
        )
    return LeanPutEventsClient(
        client, credentials=credentials, timeout_s=settings.put_events_timeout_seconds
    )


def build_checkpoint_store(
    settings: RelaySettings, *, mongo: MongoClient[Any], dynamodb: Any
) -> CheckpointStore:
    if settings.checkpoint_store == "mongodb":
        collection = mongo[settings.checkpoint_database][settings.checkpoint_collection]
        return MongoCheckpointStore(collection, settings.relay_id)
    return DynamoDBCheckpointStore(dynamodb, settings.checkpoint_table or "", settings.relay_id)


def side_clients(
    settings: RelaySettings, *, dynamodb: Any = None, s3: Any = None, sqs: Any = None
) -> tuple[Any, Any, Any]:
    """DynamoDB, S3 and SQS clients, each made only when a setting needs it (or handed in)."""
    needs_dynamodb = settings.checkpoint_store == "dynamodb" or settings.lease_enabled
    dynamodb = dynamodb or (aws_client("dynamodb") if needs_dynamodb else None)
    s3 = s3 or (aws_client("s3", timeout_s=30.0) if settings.oversize_bucket else None)
    sqs = sqs or (aws_client("sqs") if settings.dlq_queue_url else None)
    return dynamodb, s3, sqs


@dataclass(frozen=True, slots=True)
class RelayClients:
    """What one relay process talks to; `connect` builds each from settings unless handed in."""

    mongo: MongoClient[Any]
    events: Any
    dynamodb: Any
    s3: Any
    sqs: Any
    checkpoint_store: CheckpointStore

    @classmethod
    def connect(
        cls,
        settings: RelaySettings,
        *,
        mongo: MongoClient[Any] | None = None,
        events: Any = None,
        dynamodb: Any = None,
        sqs: Any = None,
        s3: Any = None,
        checkpoint_store: CheckpointStore | None = None,
    ) -> "RelayClients":
        mongo = mongo or make_client(settings.mongodb_uri)
        events = events or events_client(settings)
        dynamodb, s3, sqs = side_clients(settings, dynamodb=dynamodb, s3=s3, sqs=sqs)
        store = checkpoint_store or build_checkpoint_store(settings, mongo=mongo, dynamodb=dynamodb)
        return cls(mongo, events, dynamodb, s3, sqs, store)


def forwarder_options(settings: RelaySettings) -> ForwarderOptions:
    return ForwarderOptions(
        batch_max_entries=settings.batch_max_entries,
        max_in_flight=settings.max_in_flight_requests,
        max_request_bytes=settings.max_request_bytes,
        retry_base_s=settings.retry_base_seconds,
        retry_max_s=settings.retry_max_seconds,
        halt_on_permanent_failure=settings.on_permanent_failure == "halt",
    )


def dead_letter_sink(
    settings: RelaySettings, stats: Stats, *, sqs: Any, s3: Any, wait: Any
) -> DeadLetterSink:
    """The DLQ from DLQ_QUEUE_URL, or (unset) a sink that logs and counts."""
    if settings.dlq_queue_url and sqs is not None:
        return SqsDeadLetterSink(
            sqs,
            settings.dlq_queue_url,
            settings.relay_id,
            stats,
            s3=s3,
            bucket=settings.oversize_bucket,
            prefix=settings.oversize_prefix,
            wait=wait,
        )
    return LoggingDeadLetterSink(stats)


def change_encoder(
    settings: RelaySettings, stats: Stats, *, s3: Any, stop: threading.Event, key_prefix: str
) -> ChangeEncoder:
    """The contract's encoder with the oversize tiers; offloaded payloads go under `key_prefix`."""
    return ChangeEncoder(
        bus_name=settings.event_bus_name,
        source=settings.event_source,
        max_entry_bytes=settings.max_request_bytes,
        stats=stats,
        s3=s3,
        bucket=settings.oversize_bucket,
        prefix=settings.oversize_prefix,
        relay_id=key_prefix,
        stop=stop,
    )


def relay_forwarder(
    settings: RelaySettings, stats: Stats, clients: RelayClients, stop: threading.Event
) -> Forwarder:
    """The forwarder with the relay's options and dead-letter sink, sending on `clients.events`."""
    sink = dead_letter_sink(settings, stats, sqs=clients.sqs, s3=clients.s3, wait=stop.wait)
    return Forwarder(clients.events, sink, stats, forwarder_options(settings))


def metrics_emitter(settings: RelaySettings, stats: Stats) -> MetricsEmitter:
    return MetricsEmitter(
        stats,
        namespace=settings.metrics_namespace,
        service=settings.service_name,
        relay_id=settings.relay_id,
    )


def lease_for(settings: RelaySettings, dynamodb: Any) -> Lease:
    """The leader lease of `RELAY_ID`, kept in the checkpoint table."""
    return Lease(
        dynamodb, settings.checkpoint_table or "", settings.relay_id, settings.lease_seconds
    )


class Relay:
    """One relay: optional lease, then stream -> encode -> forward -> checkpoint until stopped."""

    def __init__(
        self,
        settings: RelaySettings,
        *,
        mongo: MongoClient[Any] | None = None,
        events: Any = None,
        dynamodb: Any = None,
        sqs: Any = None,
        s3: Any = None,
        checkpoint_store: CheckpointStore | None = None,
        lease_keeper: LeaseKeeper | None = None,
    ) -> None:
        self.settings = settings
        self.stats = Stats()
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        self.clients = RelayClients.connect(
            settings,
            mongo=mongo,
            events=events,
            dynamodb=dynamodb,
            sqs=sqs,
            s3=s3,
            checkpoint_store=checkpoint_store,
        )
        # A keeper handed in is already held (the backfill's start-up mode took it, and stops
        # this relay if it is lost); otherwise the relay takes its own when the lease is on.
        self._owns_lease = lease_keeper is None
        self._lease = lease_keeper
        if lease_keeper is None and settings.lease_enabled:
            self._lease = LeaseKeeper(
                lease_for(settings, self.clients.dynamodb),
                stop=self._stop,
                on_lost=self.stop,
                on_waiting=self._beat,
            )
        self._health = HealthFile(settings.health_file)
        self._state = "starting"
        self._heartbeat = time.monotonic()
        self._saved: Position | None = None
        self._read_position: Position | None = None
        self._start_at: Timestamp | None = None
        self.forwarder: Forwarder | None = None
        self._encoder = change_encoder(
            settings, self.stats, s3=self.clients.s3, stop=self._stop, key_prefix=settings.relay_id
        )

    # Control.

    def stop(self) -> None:
        """Ask the relay to stop: stop reading, flush, checkpoint. Safe from any thread."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
            logger.info("stop requested", deadline_s=self.settings.stop_deadline_seconds)
        self._stop.set()

    @property
    def state(self) -> str:
        return self._state

    def run(self) -> int:
        """Run until stopped; returns the process exit code (see README 'The relay')."""
        emitter = metrics_emitter(self.settings, self.stats)
        metrics = Ticker("metrics", self.settings.metrics_interval_seconds, emitter.emit)
        health = Ticker(
            "health", min(5.0, self.settings.health_max_age_seconds / 4), self._write_health
        )
        self._write_health()
        metrics.start()
        health.start()
        lease = self._lease
        code = EXIT_ERROR
        try:
            if lease is not None and self._owns_lease:
                self._state = "standby"
                if not lease.acquire(self.settings.relay_id):
                    code = EXIT_OK
                    return code
            code = self._run_streaming()
            if lease is not None and lease.lost.is_set():
                code = EXIT_LEASE_LOST
            return code
        finally:
            if lease is not None and self._owns_lease:
                lease.release()
            self._state = "stopped" if code == EXIT_OK else "failed"
            health.stop()
            metrics.stop()
            logger.info(
                "relay stopped", extra={"exit_code": code, **nonzero_ints(self.stats.totals())}
            )

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    # Streaming.

    def _run_streaming(self) -> int:
        try:
            checkpoint = self.clients.checkpoint_store.load()
        except CheckpointError as error:
            logger.error("checkpoint unreadable", error=str(error))
            return EXIT_ERROR
        log_loaded(checkpoint, self.clients.checkpoint_store)
        self._saved = checkpoint.position if checkpoint else None
        self._read_position = self._saved
        self.forwarder = relay_forwarder(self.settings, self.stats, self.clients, self._stop)
        checkpointer = Ticker(
            "checkpoint", self.settings.checkpoint_interval_seconds, self._save_checkpoint
        )
        checkpointer.start()
        code = EXIT_ERROR
        try:
            code = self._stream_loop(checkpoint)
        finally:
            code = self._shut_down(checkpointer, code)
        return code

    def _shut_down(self, checkpointer: Ticker, code: int) -> int:
        forwarder = self.forwarder
        assert forwarder is not None
        started = self._stop_requested_at or time.monotonic()
        remaining = self.settings.stop_deadline_seconds - (time.monotonic() - started)
        # Leave a little of the deadline for the final checkpoint write.
        flushed = forwarder.drain(max(0.0, remaining - 1.0))
        if not flushed and forwarder.halt_error is None:
            logger.error(
                "stop deadline reached with changes in flight", in_flight=forwarder.in_flight
            )
            if code == EXIT_OK:
                code = EXIT_STOP_DEADLINE
        forwarder.abort()
        checkpointer.stop(final_run=False)
        forwarder.close()
        self._save_checkpoint()
        return code

    def _stream_loop(self, checkpoint: Checkpoint | None) -> int:
        delay = 0.5
        while not self._stop.is_set():
            position = self._read_position
            try:
                outcome = self._pump(position)
            except OperationFailure as error:
                if error.code == HISTORY_LOST_CODE:
                    code = self._history_lost(position, error)
                    if code is not None:
                        return code
                    continue
                if error.code in FATAL_CODES:
                    logger.error(
                        "change stream cannot be opened", code=error.code, error=str(error)
                    )
                    return EXIT_ERROR
                logger.warning(
                    "change stream failed, reopening",
                    code=error.code,
                    error=str(error),
                    retry_in_s=round(delay, 2),
                )
            except OffloadInterruptedError:
                break
            except PyMongoError as error:
                logger.warning(
                    "change stream failed, reopening", error=str(error), retry_in_s=round(delay, 2)
                )
            else:
                if outcome == "stopped":
                    break
                if outcome == "halted":
                    return EXIT_HALTED
                if outcome == "invalidated":
                    self.stats.add("Invalidated")
                    if self.settings.on_invalidate == "stop":
                        logger.error(
                            "change stream invalidated, stopping as ON_INVALIDATE=stop",
                            reason="the watched collection or database was dropped or renamed",
                        )
                        return EXIT_INVALIDATED
                    logger.warning("change stream invalidated, reopening after it")
                    delay = 0.5
                    continue
                logger.warning("change stream closed by the server, reopening")
            self.stats.add("StreamReopened")
            self._state = "reconnecting"
            if self._stop.wait(random.uniform(delay / 2, delay)):
                break
            delay = min(delay * 2, self.settings.reconnect_max_seconds)
        return EXIT_HALTED if self.forwarder and self.forwarder.halt_error else EXIT_OK

    def _pump(self, position: Position | None) -> Outcome:
        """Read until stopped or the stream ends; keeps `_read_position` at the last change read."""
        forwarder = self.forwarder
        assert forwarder is not None
        stop = self._stop
        encode = self._encoder.encode
        add = forwarder.add
        stats = self.stats
        last: Item | None = None
        read = 0
        with self.clients.mongo.start_session(causal_consistency=False) as session:
            stream = open_stream(
                self.clients.mongo,
                self.settings,
                position=position,
                session=session,
                start_at=self._start_at,
            )
            self._start_at = None
            self._state = "streaming"
            self._write_health()  # at once, not at the next tick: the health check reads it
            logger.info(
                "change stream open",
                scope=self.settings.scope.describe(),
                resumed=position is not None,
                renderer=ejson.renderer_name(),
            )
            last_marker: Any = None
            try:
                with stream, PrefetchedStream(stream, session, stop) as prefetched:
                    for chunk in prefetched.chunks():
                        for change in chunk.changes:
                            last = item = encode(change)
                            add(item)
                        read += len(chunk.changes)
                        # Partial batches go out only when the next read would wait on the server.
                        if not chunk.drained:
                            continue
                        forwarder.flush()
                        stats.add("EventsRead", read)
                        read = 0
                        self._heartbeat = time.monotonic()
                        if forwarder.halt_error is not None:
                            return "halted"
                        if chunk.changes:
                            continue
                        if last is not None and last.token is not None:
                            self._read_position = Position(
                                last.token, last.cluster_time, last.start_after
                            )
                            last = None
                        if not chunk.alive:
                            current = self._read_position
                            return (
                                "invalidated"
                                if current is not None and current.start_after
                                else "closed"
                            )
                        token = chunk.resume_token
                        if token is not None and token != last_marker:
                            last_marker = token
                            marker = self._marker(token, chunk.operation_time)
                            forwarder.add_position(marker)
                            self._read_position = marker
            finally:
                stats.add("EventsRead", read)
                if last is not None and last.token is not None:
                    self._read_position = Position(last.token, last.cluster_time, last.start_after)
        # The reader ends early only with a dead stream, and that returned above.
        return "stopped" if stop.is_set() else "closed"

    def _marker(self, token: Any, operation_time: Timestamp | None) -> Position:
        """A quiet-stream position (postBatchResumeToken) with the best cluster time we know.

        The last read change's time when known (equal order keys may overwrite each other, so the
        token still advances); only a stream that never saw a change uses the server's operation
        time, which can run slightly ahead of the token on a lagging cluster (then one later write
        is refused as "not newer" and the next one succeeds: never a lost change).
        """
        known = self._read_position.cluster_time if self._read_position else None
        return Position(token, known or operation_time)

    def _history_lost(self, position: Position | None, error: OperationFailure) -> int | None:
        lost_after = position.cluster_time if position else None
        window = None if lost_after is None else [lost_after.time, lost_after.inc]
        self.stats.add("HistoryLost")
        logger.error(
            "change stream history lost",
            lost_after=window,
            policy=self.settings.on_history_lost,
            error=str(error),
        )
        if self.settings.on_history_lost == "fail":
            return EXIT_HISTORY_LOST
        forwarder = self.forwarder
        assert forwarder is not None

        # Restart from now, and tell the consumers which window they never saw.
        reply = self.clients.mongo.admin.command("ping")
        resumed_at = reply.get("operationTime")
        if not isinstance(resumed_at, Timestamp):
            resumed_at = Timestamp(int(time.time()), 0)
        gap = encode_gap(
            scope=self.settings.scope.describe(),
            lost_after=lost_after,
            resumed_at=resumed_at,
            reason=f"ChangeStreamHistoryLost: {error}",
            bus_name=self.settings.event_bus_name,
            source=self.settings.event_source,
        )
        forwarder.add(
            Item(entry=gap, size=entry_size(gap), event_id="gap", token=None, cluster_time=None)
        )
        forwarder.flush()
        self.stats.add("GapEvents")
        logger.warning(
            "restarting from now after history lost", resumed_at=[resumed_at.time, resumed_at.inc]
        )
        self._read_position = None
        self._start_at = resumed_at
        return None

    # Background duties.

    def _save_checkpoint(self) -> None:
        forwarder = self.forwarder
        lease = self._lease
        if forwarder is None or (lease is not None and lease.lost.is_set()):
            return
        position = forwarder.watermark
        if position is None or position is self._saved:
            return
        fence = lease.fencing_token if lease is not None else 0
        try:
            saved = self.clients.checkpoint_store.save(position, fence)
        except CheckpointError as error:
            self.stats.add("CheckpointErrors")
            logger.warning("checkpoint write failed, will retry", error=str(error))
            return
        self._saved = position
        if saved:
            self.stats.add("CheckpointWrites")
            self.stats.last_checkpoint_at = time.monotonic()
            return
        self.stats.add("CheckpointRejected")
        logger.warning("checkpoint not written: the stored one is newer or from a newer leader")

    def _write_health(self) -> None:
        write_health(
            self._health,
            self._state,
            working_state="streaming",
            heartbeat=self._heartbeat,
            forwarder=self.forwarder,
            max_age_s=self.settings.health_max_age_seconds,
            relay_id=self.settings.relay_id,
            stats=self.stats,
        )


def write_health(
    health: HealthFile,
    state: str,
    *,
    working_state: str,
    heartbeat: float,
    forwarder: Forwarder | None,
    max_age_s: float,
    relay_id: str,
    stats: Stats,
) -> None:
    """Write `state` and the counters to the health file; "stalled" instead of `working_state`
    when neither the heartbeat nor a PutEvents answer is newer than `max_age_s` seconds."""
    activity = heartbeat if forwarder is None else max(heartbeat, forwarder.last_activity)
    if state == working_state and time.monotonic() - activity > max_age_s:
        state = "stalled"
    try:
        health.write(state, relayId=relay_id, **nonzero_ints(stats.totals()))
    except OSError as error:
        # The container health check will report it; the work must not stop for it.
        logger.warning("health file not written", path=str(health.path), error=str(error))


def nonzero_ints(values: Mapping[str, float]) -> dict[str, int]:
    """The counters that are not zero, as whole numbers (for logs and the health file)."""
    return {name: int(value) for name, value in values.items() if value}

"""`python -m relay backfill`: publish every existing document once, then hand over to streaming.

The stream position is recorded before the first read; documents are read in `_id` order and sent
through the relay's own encoder and forwarder (batching, retries, oversize tiers, dead letters);
progress (the last acknowledged `_id` per collection) is checkpointed beside the relay's checkpoint,
so a killed backfill resumes where it stopped; when every read is acknowledged the relay's
checkpoint is set to the recorded position (unless it already stands later), so streaming picks up
every change made since: duplicates possible, gaps impossible. Never logs document bodies.
"""

import argparse
import datetime as dt
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import bson
from botocore.exceptions import BotoCoreError, ClientError
from bson import MaxKey, MinKey, ObjectId, Regex, Timestamp, json_util
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.errors import BSONError
from bson.int64 import Int64
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.errors import OperationFailure, PyMongoError

from change_contract import ContractError, backfill_change
from change_contract.ejson import CODEC_OPTIONS
from relay.checkpoint import CheckpointError, CheckpointStore, Position, token_from_bytes
from relay.encoder import OffloadInterruptedError
from relay.forwarder import Forwarder, Item
from relay.lease import LeaseKeeper
from relay.progress import Progress, ProgressMode, ProgressReporter
from relay.service import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_HALTED,
    EXIT_LEASE_LOST,
    EXIT_OK,
    FATAL_CODES,
    Relay,
    RelayClients,
    change_encoder,
    lease_for,
    metrics_emitter,
    nonzero_ints,
    relay_forwarder,
    write_health,
)
from relay.settings import RelaySettings, SettingsError
from relay.stream import open_stream
from relay.telemetry import HealthFile, Stats, Ticker, logger

# Exit code when the recorded stream position aged out of the oplog while the backfill ran.
EXIT_SNAPSHOT_LOST: Final = 8
HISTORY_LOST_CODE: Final = 286
# Databases that hold the server's own data, never backfilled in a whole-deployment scope.
_SYSTEM_DATABASES: Final = frozenset({"admin", "local", "config"})
# Counting is only for the ETA: a filter over a large collection without an index for it can take
# minutes to count, which would hold the reads back (and, in start-up mode, the health heartbeat).
COUNT_MAX_TIME_MS: Final = 5_000
# The progress item's key beside the relay's checkpoint; '#' cannot appear in a RELAY_ID.
PROGRESS_SUFFIX: Final = "#backfill"

Status = Literal["running", "complete"]


class BackfillError(RuntimeError):
    """The backfill cannot start or go on; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Options and state
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    """What to backfill and how fast. Defaults: the relay's watch scope, every document."""

    collections: tuple[str, ...] = ()
    query: Mapping[str, Any] | None = None
    rate_per_second: float | None = None
    batch_size: int = 500
    restart: bool = False
    then_run: bool = False
    progress: ProgressMode = "auto"
    progress_interval_seconds: float = 15.0
    checkpoint_interval_seconds: float = 1.0

    def query_json(self) -> str:
        """The filter as canonical Extended JSON: what a resumed run must match."""
        if not self.query:
            return "{}"
        return str(json_util.dumps(self.query, json_options=json_util.CANONICAL_JSON_OPTIONS))


@dataclass(slots=True)
class BackfillState:
    """What is stored between runs: the handover position and how far the reads were acknowledged.

    `last` is the forwarder's watermark token: `{"db", "coll", "lastId"}` after a document, or
    `{"db", "coll", "done": True}` after a whole collection. Namespaces are read in list order.
    """

    snapshot: Position
    namespaces: list[tuple[str, str]]
    query: str
    status: Status = "running"
    last: Mapping[str, Any] | None = None
    sent: int = 0
    started_at: float = field(default_factory=time.time)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_bson(self) -> bytes:
        cluster_time = self.snapshot.cluster_time
        document: dict[str, Any] = {
            "snapshotToken": self.snapshot.token,
            "snapshotTime": cluster_time,
            "namespaces": [[db, coll] for db, coll in self.namespaces],
            "query": self.query,
            "status": self.status,
            "last": self.last,
            "sent": Int64(self.sent),
            "startedAt": self.started_at,
            "runId": self.run_id,
        }
        return bson.encode(document, codec_options=CODEC_OPTIONS)

    @classmethod
    def from_bson(cls, data: bytes) -> "BackfillState":
        document = bson.decode(data, codec_options=_STATE_CODEC)
        token = token_from_bytes(bson.encode(document["snapshotToken"]))
        return cls(
            snapshot=Position(token, document.get("snapshotTime")),
            namespaces=[(str(db), str(coll)) for db, coll in document["namespaces"]],
            query=str(document["query"]),
            status=document["status"],
            last=document.get("last"),
            sent=int(document.get("sent", 0)),
            started_at=float(document.get("startedAt", 0.0)),
            run_id=str(document.get("runId", "")),
        )

    def remaining(self) -> list[tuple[tuple[str, str], Any]]:
        """Namespaces still to read, each with the `_id` to read after (`_START` = from the top)."""
        if self.last is None:
            return [(ns, _START) for ns in self.namespaces]
        current = (str(self.last["db"]), str(self.last["coll"]))
        if current not in self.namespaces:
            raise BackfillError(f"stored progress names {current}, which is not being backfilled")
        index = self.namespaces.index(current)
        if self.last.get("done"):
            return [(ns, _START) for ns in self.namespaces[index + 1 :]]
        rest = [(ns, _START) for ns in self.namespaces[index + 1 :]]
        return [(current, self.last["lastId"]), *rest]


_START: Final = object()  # "read from the first document"
# The stored state decodes to plain dicts (the `_id`s inside keep their BSON types).
_STATE_CODEC: Final = CODEC_OPTIONS.with_options(document_class=dict)


class ProgressStore(Protocol):
    def load(self) -> BackfillState | None: ...

    def save(self, state: BackfillState) -> None: ...

    def describe(self) -> str: ...


class DynamoDBProgressStore:
    """The progress item in the checkpoint table, under `relayId` = `<RELAY_ID>#backfill`."""

    def __init__(self, client: Any, table: str, relay_id: str) -> None:
        self._client = client
        self._table = table
        self._key = {"relayId": {"S": relay_id + PROGRESS_SUFFIX}}

    def describe(self) -> str:
        return f"dynamodb://{self._table}/{self._key['relayId']['S']}"

    def load(self) -> BackfillState | None:
        try:
            item = self._client.get_item(
                TableName=self._table, Key=self._key, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise CheckpointError(f"cannot read backfill progress {self.describe()}") from error
        if not item or "state" not in item:
            return None
        return BackfillState.from_bson(item["state"]["B"])

    def save(self, state: BackfillState) -> None:
        now = time.time()
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **self._key,
                    "state": {"B": state.to_bson()},
                    "status": {"S": state.status},
                    "sent": {"N": str(state.sent)},
                    "updatedAt": {"N": f"{now:.3f}"},
                    "updatedAtIso": {"S": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()},
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise CheckpointError(f"cannot write backfill progress {self.describe()}") from error


class MongoProgressStore:
    """The progress document in the checkpoint collection, `_id` = `<RELAY_ID>#backfill`."""

    def __init__(self, collection: Any, relay_id: str) -> None:
        self._collection = collection
        self._id = relay_id + PROGRESS_SUFFIX

    def describe(self) -> str:
        return f"mongodb://{self._collection.full_name}/{self._id}"

    def load(self) -> BackfillState | None:
        try:
            found = self._collection.find_one({"_id": self._id})
        except PyMongoError as error:
            raise CheckpointError(f"cannot read backfill progress {self.describe()}") from error
        if found is None or "state" not in found:
            return None
        return BackfillState.from_bson(bytes(found["state"]))

    def save(self, state: BackfillState) -> None:
        fields = {
            "state": Binary(state.to_bson()),
            "status": state.status,
            "sent": Int64(state.sent),
            "updatedAt": dt.datetime.now(dt.UTC),
        }
        try:
            self._collection.update_one({"_id": self._id}, {"$set": fields}, upsert=True)
        except PyMongoError as error:
            raise CheckpointError(f"cannot write backfill progress {self.describe()}") from error


def build_progress_store(
    settings: RelaySettings, *, mongo: MongoClient[Any], dynamodb: Any
) -> ProgressStore:
    if settings.checkpoint_store == "mongodb":
        collection = mongo[settings.checkpoint_database][settings.checkpoint_collection]
        return MongoProgressStore(collection, settings.relay_id)
    return DynamoDBProgressStore(dynamodb, settings.checkpoint_table or "", settings.relay_id)


# ---------------------------------------------------------------------------------------------
# Reading in `_id` order, resumable across BSON types
# ---------------------------------------------------------------------------------------------

# BSON comparison order of the types an `_id` can have (an `_id` is never an array). A `$gt` is
# type-bracketed (it only matches values of the same type class), so "after x" must also name
# every type that sorts after x's.
_TYPE_ORDER: Final = (
    ("minKey",),
    ("null", "undefined"),
    ("double", "int", "long", "decimal"),
    ("symbol", "string"),
    ("object",),
    ("binData",),
    ("objectId",),
    ("bool",),
    ("date",),
    ("timestamp",),
    ("regex",),
    ("maxKey",),
)


def type_rank(value: Any) -> int | None:
    """Index of `value`'s type class in `_TYPE_ORDER`, None when unknown."""
    checks: tuple[tuple[type | tuple[type, ...], int], ...] = (
        (MinKey, 0),
        (type(None), 1),
        (bool, 7),  # before int: a bool is an int in Python
        ((int, float, Int64, Decimal128), 2),
        (str, 3),
        (Mapping, 4),
        ((bytes, Binary, uuid.UUID), 5),
        (ObjectId, 6),
        ((dt.datetime, DatetimeMS), 8),
        (Timestamp, 9),
        ((Regex, re.Pattern), 10),
        (MaxKey, 11),
    )
    for kinds, rank in checks:
        if isinstance(value, kinds):
            return rank
    return None


def after_filter(last_id: Any) -> dict[str, Any]:
    """Documents whose `_id` sorts after `last_id`, whatever their BSON type."""
    greater: dict[str, Any] = {"_id": {"$gt": last_id}}
    rank = type_rank(last_id)
    if rank is None:
        return greater
    later = [alias for group in _TYPE_ORDER[rank + 1 :] for alias in group]
    if not later:
        return greater
    return {"$or": [greater, {"_id": {"$type": later}}]}


def namespace_query(query: Mapping[str, Any] | None, last_id: Any) -> dict[str, Any]:
    parts = [dict(query)] if query else []
    if last_id is not _START:
        parts.append(after_filter(last_id))
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


# ---------------------------------------------------------------------------------------------
# Rate limit
# ---------------------------------------------------------------------------------------------


class RateLimiter:
    """Paces calls to `acquire` to at most `rate` per second, without bursts after a pause.

    Waits are skipped while the debt is under a few milliseconds, so pacing thousands of
    documents per second does not mean thousands of sleeps; the average holds either way.
    """

    _MIN_WAIT_S: Final = 0.005

    def __init__(
        self,
        rate_per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        if rate_per_second is not None and rate_per_second <= 0:
            raise ValueError("rate must be positive")
        self.interval_s = 0.0 if rate_per_second is None else 1.0 / rate_per_second
        self._clock = clock
        self._wait = wait or threading.Event().wait
        self._next: float | None = None

    def acquire(self) -> bool:
        """Take one slot; False when the wait was interrupted (the command is stopping)."""
        if not self.interval_s:
            return True
        now = self._clock()
        # An idle spell is not banked: the schedule restarts from now, never from the past.
        start = now if self._next is None or self._next < now else self._next
        self._next = start + self.interval_s
        debt = start - now
        if debt >= self._MIN_WAIT_S:
            return not self._wait(debt)
        return True


# ---------------------------------------------------------------------------------------------
# The backfill
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackfillResult:
    exit_code: int
    sent: int
    handed_over: bool
    snapshot: Position | None


class Backfill:
    """One backfill run. Clients are swappable like the relay's (tests hand in their own)."""

    def __init__(
        self,
        settings: RelaySettings,
        options: BackfillOptions,
        *,
        mongo: MongoClient[Any] | None = None,
        events: Any = None,
        dynamodb: Any = None,
        sqs: Any = None,
        s3: Any = None,
        checkpoint_store: CheckpointStore | None = None,
        progress_store: ProgressStore | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.stats = Stats()
        self._stop = threading.Event()
        self.clients = RelayClients.connect(
            settings,
            mongo=mongo,
            events=events,
            dynamodb=dynamodb,
            sqs=sqs,
            s3=s3,
            checkpoint_store=checkpoint_store,
        )
        self.progress_store = progress_store or build_progress_store(
            settings, mongo=self.clients.mongo, dynamodb=self.clients.dynamodb
        )
        self._limiter = RateLimiter(options.rate_per_second, wait=self._stop.wait)
        self._state: BackfillState | None = None
        self._saved_mark: Position | None = None
        self.forwarder: Forwarder | None = None
        self._encoder = change_encoder(
            settings,
            self.stats,
            s3=self.clients.s3,
            stop=self._stop,
            key_prefix=settings.relay_id + PROGRESS_SUFFIX.replace("#", "-"),
        )
        self._relay: Relay | None = None
        self._resumed_sent = 0
        # Start-up mode is the task's main process: it keeps the health file until the relay
        # takes over, and with the lease on it backfills only as the leader (see `run`).
        self._health = HealthFile(settings.health_file)
        self._health_state = "starting"
        self._heartbeat = time.monotonic()
        self._lease: LeaseKeeper | None = None
        if options.then_run and settings.lease_enabled:
            self._lease = LeaseKeeper(
                lease_for(settings, self.clients.dynamodb),
                stop=self._stop,
                on_lost=self.stop,
                on_waiting=self._beat,
            )

    def stop(self) -> None:
        """Stop reading, flush what is in flight, save progress. Safe from any thread."""
        if not self._stop.is_set():
            logger.info("backfill stop requested")
        self._stop.set()
        if self._relay is not None:
            self._relay.stop()

    # The whole command.

    def run(self) -> BackfillResult:
        """Backfill (or resume, or skip a finished one), hand over, then stream if asked to."""
        if not self.options.then_run:
            return self._run_backfill()
        health = Ticker(
            "health", min(5.0, self.settings.health_max_age_seconds / 4), self._write_health
        )
        self._write_health()
        health.start()
        lease = self._lease
        try:
            result = self._lead_and_backfill()
            health.stop(final_run=False)  # the relay writes the health file from here on
            if result.exit_code == EXIT_OK and not self._stop.is_set():
                result = self._stream(result)
            if lease is not None and lease.lost.is_set():
                result = BackfillResult(
                    EXIT_LEASE_LOST, result.sent, result.handed_over, result.snapshot
                )
            return result
        finally:
            health.stop(final_run=False)  # again, for an exit before the line above
            if lease is not None:
                lease.release()

    def _lead_and_backfill(self) -> BackfillResult:
        """Start-up mode's backfill: with the lease on, only once this task holds the lease."""
        if self._lease is not None:
            self._health_state = "standby"
            if not self._lease.acquire(self.settings.relay_id):
                return BackfillResult(EXIT_OK, 0, False, None)
        self._health_state = "backfilling"
        result = self._run_backfill()
        self._health_state = "starting"  # the relay, which writes its own from its start
        return result

    def _stream(self, result: BackfillResult) -> BackfillResult:
        """Start the relay on the same clients, and the lease this task already holds."""
        logger.info("backfill done, starting the relay")
        self._relay = Relay(
            self.settings,
            mongo=self.clients.mongo,
            events=self.clients.events,
            dynamodb=self.clients.dynamodb,
            sqs=self.clients.sqs,
            s3=self.clients.s3,
            checkpoint_store=self.clients.checkpoint_store,
            lease_keeper=self._lease,
        )
        if self._stop.is_set():
            return result
        code = self._relay.run()
        return BackfillResult(code, result.sent, result.handed_over, result.snapshot)

    def _run_backfill(self) -> BackfillResult:
        try:
            return self._backfill()
        except SnapshotLostError as error:
            logger.error("backfill snapshot lost", error=str(error))
            return BackfillResult(EXIT_SNAPSHOT_LOST, 0, False, None)
        except (BackfillError, CheckpointError) as error:
            logger.error("backfill cannot go on", error=str(error))
            return BackfillResult(EXIT_ERROR, 0, False, None)

    # Health, in start-up mode.

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    def _write_health(self) -> None:
        write_health(
            self._health,
            self._health_state,
            working_state="backfilling",
            heartbeat=self._heartbeat,
            forwarder=self.forwarder,
            # A paced read (`--rate`) waits up to one interval between documents.
            max_age_s=self.settings.health_max_age_seconds + self._limiter.interval_s,
            relay_id=self.settings.relay_id,
            stats=self.stats,
        )

    def _backfill(self) -> BackfillResult:
        state = None if self.options.restart else self.progress_store.load()
        if state is None and self.options.then_run and not self.options.restart:
            checkpoint = self.clients.checkpoint_store.load()
            if checkpoint is not None:
                # Start-up mode on a relay that already streams: nothing to fill.
                logger.info("relay checkpoint exists, no backfill needed")
                return BackfillResult(EXIT_OK, 0, False, None)
        if state is not None and state.status == "complete":
            logger.info(
                "backfill already complete",
                sent=state.sent,
                store=self.progress_store.describe(),
            )
            handed = self._hand_over(state)
            return BackfillResult(EXIT_OK, 0, handed, state.snapshot)

        namespaces = self._namespaces()
        if state is None:
            state = self._start(namespaces)
        else:
            self._check_resumable(state, namespaces)
            logger.info(
                "resuming backfill",
                sent=state.sent,
                namespaces=len(state.namespaces),
                store=self.progress_store.describe(),
            )
        self._state = state
        code = self._read_and_forward(state)
        if code != EXIT_OK or self._stop.is_set():
            logger.info("backfill stopped before the end", exit_code=code, sent=state.sent)
            return BackfillResult(code, state.sent, False, state.snapshot)

        state.status = "complete"
        self.progress_store.save(state)
        logger.info("backfill complete", sent=state.sent, totals=nonzero_ints(self.stats.totals()))
        handed = self._hand_over(state)
        return BackfillResult(EXIT_OK, state.sent, handed, state.snapshot)

    # Start: which namespaces, and the stream position before any read.

    def _namespaces(self) -> list[tuple[str, str]]:
        scope = self.settings.scope
        if self.options.collections:
            if scope.database is None:
                raise BackfillError(
                    "--collections needs WATCH_DATABASE (collections belong to one database)"
                )
            return [(scope.database, name) for name in self.options.collections]
        if scope.collections:
            assert scope.database is not None
            return [(scope.database, name) for name in scope.collections]
        databases = [scope.database] if scope.database else self.clients.mongo.list_database_names()
        found: list[tuple[str, str]] = []
        for database in sorted(databases):
            if database in _SYSTEM_DATABASES:
                continue
            names = self.clients.mongo[database].list_collection_names(
                filter={"type": "collection"}, authorizedCollections=True
            )
            for name in sorted(names):
                if name.startswith("system.") or self._is_checkpoint_collection(database, name):
                    continue
                found.append((database, name))
        return found

    def _is_checkpoint_collection(self, database: str, name: str) -> bool:
        settings = self.settings
        return (
            settings.checkpoint_store == "mongodb"
            and database == settings.checkpoint_database
            and name == settings.checkpoint_collection
        )

    def _start(self, namespaces: list[tuple[str, str]]) -> BackfillState:
        snapshot = self._record_position()
        state = BackfillState(
            snapshot=snapshot, namespaces=namespaces, query=self.options.query_json()
        )
        # Saved before the first read: a crash from here on resumes with this same position.
        self.progress_store.save(state)
        ct = snapshot.cluster_time
        logger.info(
            "backfill started",
            namespaces=[f"{db}.{coll}" for db, coll in namespaces],
            snapshot_time=None if ct is None else [ct.time, ct.inc],
            rate_per_s=self.options.rate_per_second,
            store=self.progress_store.describe(),
        )
        return state

    def _record_position(self) -> Position:
        """The change stream's position now: opened, read once for its token, closed."""
        with self.clients.mongo.start_session(causal_consistency=False) as session:
            stream = open_stream(self.clients.mongo, self.settings, position=None, session=session)
            with stream:
                # The opening aggregate's postBatchResumeToken: the position before any read.
                token = stream.resume_token
                cluster_time = session.operation_time
        if token is None:
            raise BackfillError("the server gave no resume token for the change stream")
        if cluster_time is None:
            raise BackfillError("the server gave no operation time for the change stream")
        return Position(token, cluster_time)

    def _check_resumable(self, state: BackfillState, namespaces: list[tuple[str, str]]) -> None:
        if state.namespaces != namespaces or state.query != self.options.query_json():
            raise BackfillError(
                "an unfinished backfill was started with other collections or another filter; "
                "run it again with those, or pass --restart to start over"
            )

    # Reading and forwarding.

    def _read_and_forward(self, state: BackfillState) -> int:
        self.forwarder = relay_forwarder(self.settings, self.stats, self.clients, self._stop)
        already = state.sent
        self._resumed_sent = already
        progress = Progress(
            self._acknowledged, self._count_total(state), what="documents", already_done=already
        )
        reporter = ProgressReporter(
            progress,
            mode=self.options.progress,
            log_interval_s=self.options.progress_interval_seconds,
        )
        emitter = metrics_emitter(self.settings, self.stats)
        # EMF lines go to stdout: on a terminal they would only interleave with the bar.
        metrics = Ticker(
            "metrics",
            self.settings.metrics_interval_seconds,
            emitter.emit if reporter.mode != "bar" else lambda: None,
        )
        saver = Ticker("backfill-progress", self.options.checkpoint_interval_seconds, self._save)
        reporter.start()
        metrics.start()
        saver.start()
        code = EXIT_ERROR
        try:
            code = self._read_all(state)
        finally:
            code = self._finish(saver, code)
            reporter.stop()
            metrics.stop()
        return code

    def _count_total(self, state: BackfillState) -> int | None:
        total = 0
        try:
            for db, coll in state.namespaces:
                collection = self.clients.mongo[db][coll]
                if self.options.query:
                    total += collection.count_documents(
                        dict(self.options.query), maxTimeMS=COUNT_MAX_TIME_MS
                    )
                else:
                    total += collection.estimated_document_count()
        except PyMongoError as error:
            logger.warning("cannot count documents, no ETA", error=str(error))
            return None
        return total

    def _read_all(self, state: BackfillState) -> int:
        forwarder = self.forwarder
        assert forwarder is not None
        snapshot_time = state.snapshot.cluster_time
        assert snapshot_time is not None
        # A causally consistent session that has seen the snapshot time reads with
        # `afterClusterTime`: even a lagging secondary (a readPreference in the URI) returns
        # every write up to the snapshot, which the stream will not replay.
        with self.clients.mongo.start_session(causal_consistency=True) as session:
            session.advance_operation_time(snapshot_time)
            for (db, coll), last_id in state.remaining():
                outcome = self._read_namespace(session, db, coll, last_id, snapshot_time)
                if outcome is not None:
                    return outcome
                done = Position({"db": db, "coll": coll, "done": True}, snapshot_time)
                forwarder.add_position(done)
                logger.info("collection backfilled", db=db, coll=coll)
        return EXIT_OK

    def _read_namespace(
        self, session: ClientSession, db: str, coll: str, last_id: Any, snapshot_time: Timestamp
    ) -> int | None:
        """Read one collection from after `last_id`; reopens the cursor after a server error."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                for document in self._documents(session, db, coll, last_id):
                    last_id = document["_id"]
                    outcome = self._forward_one(document, db, coll, snapshot_time)
                    if outcome is not None:
                        return outcome
                return None
            except PyMongoError as error:
                if isinstance(error, OperationFailure) and error.code in FATAL_CODES:
                    raise BackfillError(f"cannot read {db}.{coll}: {error}") from error
                # A cursor is not resumed by the driver: reopen after the last read `_id`.
                logger.warning(
                    "backfill read failed, reopening", db=db, coll=coll, error=str(error)
                )
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.settings.reconnect_max_seconds)
        return EXIT_OK

    def _documents(self, session: ClientSession, db: str, coll: str, last_id: Any) -> Iterator[Any]:
        collection = self.clients.mongo.get_database(db, codec_options=CODEC_OPTIONS)[coll]
        query = namespace_query(self.options.query, last_id)
        cursor = collection.find(
            query, sort=[("_id", 1)], batch_size=self.options.batch_size, session=session
        )
        with cursor:
            yield from cursor

    def _forward_one(
        self, document: Any, db: str, coll: str, snapshot_time: Timestamp
    ) -> int | None:
        forwarder = self.forwarder
        assert forwarder is not None
        if not self._limiter.acquire() or self._stop.is_set():
            return EXIT_OK
        self._heartbeat = time.monotonic()
        document_id = document["_id"]
        try:
            change = backfill_change(document, {"db": db, "coll": coll}, snapshot_time)
        except ContractError as error:
            # Not a document this contract can name (an `_id` BSON cannot hash): dead-letter it.
            change = {"_id": None, "documentKey": {"_id": document_id}, "fullDocument": document}
            item = Item(None, 0, "backfill:unknown", None, snapshot_time, change, str(error))
        else:
            try:
                item = self._encoder.encode(change)
            except OffloadInterruptedError:
                return EXIT_OK
        item.token = {"db": db, "coll": coll, "lastId": document_id}
        item.cluster_time = snapshot_time
        forwarder.add(item)
        self.stats.add("EventsRead")
        if forwarder.halt_error is not None:
            logger.error("backfill halted", error=str(forwarder.halt_error))
            return EXIT_HALTED
        return None

    def _finish(self, saver: Ticker, code: int) -> int:
        forwarder = self.forwarder
        assert forwarder is not None
        # Every read must be acknowledged before the backfill can call itself complete: wait as
        # long as the retries take, until a stop request, which then bounds the wait.
        drained = forwarder.drain(1.0)
        while not drained and forwarder.halt_error is None and not self._stop.is_set():
            drained = forwarder.drain(1.0)
        if not drained and forwarder.halt_error is None:
            drained = forwarder.drain(self.settings.stop_deadline_seconds)
        if not drained and code == EXIT_OK:
            code = EXIT_HALTED if forwarder.halt_error is not None else EXIT_ERROR
            if forwarder.halt_error is None:
                logger.error(
                    "backfill stopped with documents in flight", in_flight=forwarder.in_flight
                )
        forwarder.abort()
        saver.stop(final_run=False)
        forwarder.close()
        self._save()
        return code

    def _save(self) -> None:
        """Store the watermark (the last read acknowledged with all before it) as progress."""
        state, forwarder = self._state, self.forwarder
        if state is None or forwarder is None:
            return
        if self._lease is not None and self._lease.lost.is_set():
            return  # deposed: the new leader owns the progress now
        mark = forwarder.watermark
        if mark is None or mark is self._saved_mark:
            return
        state.last = dict(mark.token)
        state.sent = self._resumed_sent + int(self._acknowledged())
        try:
            self.progress_store.save(state)
        except CheckpointError as error:
            self.stats.add("CheckpointErrors")
            logger.warning("backfill progress write failed, will retry", error=str(error))
            return
        self._saved_mark = mark
        self.stats.add("CheckpointWrites")

    # Handover to streaming.

    def _hand_over(self, state: BackfillState) -> bool:
        """Set the relay's checkpoint to the recorded position, unless it already stands later.

        A backfill run beside the relay is not a leader: its write carries the stored checkpoint's
        fencing token, so a lease a stopped relay left behind does not refuse it. Start-up mode
        with the lease on writes with the token of the lease it holds.
        """
        ct = state.snapshot.cluster_time
        where = None if ct is None else [ct.time, ct.inc]
        try:
            existing = self.clients.checkpoint_store.load()
        except CheckpointError as error:
            raise BackfillError(f"cannot hand over to streaming: {error}") from error
        if existing is not None and existing.position.order_key >= state.snapshot.order_key:
            # The relay streamed past the snapshot already (it is running, or a finished
            # backfill hands over again at a restart): its position is the one that counts.
            logger.info(
                "relay checkpoint already later than the backfill snapshot", snapshot_time=where
            )
            return False
        self._check_position_alive(state.snapshot)
        # The leader's token in start-up mode with the lease; otherwise the stored one.
        if self._lease is not None:
            fence = self._lease.fencing_token
        else:
            fence = existing.fencing_token if existing is not None else 0
        try:
            written = self.clients.checkpoint_store.save(state.snapshot, fence)
        except CheckpointError as error:
            raise BackfillError(f"cannot hand over to streaming: {error}") from error
        if written:
            logger.info("relay checkpoint set to the backfill snapshot", snapshot_time=where)
        else:
            logger.info("relay checkpoint moved past the snapshot meanwhile", snapshot_time=where)
        return written

    def _check_position_alive(self, position: Position) -> None:
        """Streaming must be able to resume from the recorded position, or changes are lost."""
        try:
            with self.clients.mongo.start_session(causal_consistency=False) as session:
                stream = open_stream(
                    self.clients.mongo, self.settings, position=position, session=session
                )
                stream.close()
        except OperationFailure as error:
            if error.code == HISTORY_LOST_CODE:
                raise SnapshotLostError(
                    "the position recorded before the backfill is no longer in the oplog: changes "
                    "made during the backfill may be missing; enlarge the oplog window or backfill "
                    "faster (--rate), then run again with --restart"
                ) from error
            raise BackfillError(
                f"cannot open the change stream at the snapshot: {error}"
            ) from error

    def _acknowledged(self) -> float:
        """Reads EventBridge accepted or that were dead-lettered, in this run."""
        return self.stats.total("EventsForwarded") + self.stats.total("PermanentFailures")


class SnapshotLostError(BackfillError):
    """The recorded stream position aged out of the oplog before streaming took over."""


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python -m relay backfill",
        description=(
            "Publish every existing document of the watched collections once (marked "
            "origin=backfill), then hand over to streaming from the position recorded before "
            "reading. Configuration: the relay's environment variables. See README 'Recovery'."
        ),
    )
    command.add_argument(
        "--collections", default="", help="comma-separated collections of WATCH_DATABASE"
    )
    command.add_argument(
        "--filter", default="", help="MongoDB query (Extended JSON) the documents must match"
    )
    command.add_argument(
        "--rate", type=float, default=None, help="at most this many documents per second"
    )
    command.add_argument("--batch-size", type=int, default=500, help="documents per cursor batch")
    command.add_argument(
        "--restart", action="store_true", help="ignore stored progress and start over"
    )
    command.add_argument(
        "--then-run",
        action="store_true",
        help="then stream (`run`); skips the backfill when the relay already has a checkpoint",
    )
    command.add_argument(
        "--progress", choices=["auto", "bar", "log", "off"], default="auto", help="progress display"
    )
    command.add_argument(
        "--progress-interval", type=float, default=15.0, help="seconds between progress log lines"
    )
    command.add_argument(
        "--status", action="store_true", help="print the stored progress as JSON and exit"
    )
    command.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        help="seconds between progress checkpoints (a crash re-sends at most this much)",
    )
    return command


def options_from(arguments: argparse.Namespace) -> BackfillOptions:
    """Validated options; `ValueError` names the option that is wrong."""
    query: Mapping[str, Any] | None = None
    if arguments.filter.strip():
        try:
            parsed = json_util.loads(arguments.filter)
        except (ValueError, TypeError, BSONError) as error:
            raise ValueError(f"--filter is not valid Extended JSON: {error}") from error
        if not isinstance(parsed, dict):
            raise ValueError("--filter must be a JSON object (a MongoDB query)")
        query = parsed
    if arguments.rate is not None and arguments.rate <= 0:
        raise ValueError("--rate must be a positive number of documents per second")
    if not 1 <= arguments.batch_size <= 100_000:
        raise ValueError("--batch-size must be between 1 and 100000")
    collections = tuple(name.strip() for name in arguments.collections.split(",") if name.strip())
    if len(set(collections)) != len(collections):
        raise ValueError("--collections lists a collection twice")
    return BackfillOptions(
        collections=collections,
        query=query,
        rate_per_second=arguments.rate,
        batch_size=arguments.batch_size,
        restart=arguments.restart,
        then_run=arguments.then_run,
        progress=arguments.progress,
        progress_interval_seconds=max(arguments.progress_interval, 0.1),
        checkpoint_interval_seconds=min(max(arguments.checkpoint_interval, 0.05), 300.0),
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`python -m relay backfill [options]`: exit 0 when done (or stopped cleanly, resumable)."""
    arguments = parser().parse_args(argv)
    try:
        settings = RelaySettings.from_env(os.environ if env is None else env)
        options = options_from(arguments)
    except SettingsError as error:
        sys.stderr.write(f"relay backfill: configuration error: {error}\n")
        logger.error("configuration error", variable=error.variable, problem=error.problem)
        return EXIT_CONFIG
    except ValueError as error:
        sys.stderr.write(f"relay backfill: {error}\n")
        return EXIT_CONFIG
    backfill = Backfill(settings, options)
    if arguments.status:
        return print_status(backfill.progress_store)

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal received", signal=signal.Signals(signum).name)
        backfill.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    result = backfill.run()
    sys.stdout.write(
        json.dumps(
            {
                "exitCode": result.exit_code,
                "documentsSent": result.sent,
                "handedOver": result.handed_over,
                "snapshotTime": _time_of(result.snapshot),
            }
        )
        + "\n"
    )
    return result.exit_code


def describe_state(state: BackfillState | None, where: str) -> dict[str, Any]:
    """The stored progress as `--status` prints it (no document content: ids only)."""
    if state is None:
        return {"store": where, "backfill": None}
    last = None
    if state.last is not None:
        last = json.loads(json_util.dumps(state.last, json_options=json_util.RELAXED_JSON_OPTIONS))
    return {
        "store": where,
        "status": state.status,
        "documentsSent": state.sent,
        "namespaces": [f"{db}.{coll}" for db, coll in state.namespaces],
        "filter": json.loads(state.query),
        "lastAcknowledged": last,
        "snapshotTime": _time_of(state.snapshot),
        "startedAt": dt.datetime.fromtimestamp(state.started_at, tz=dt.UTC).isoformat(),
        "runId": state.run_id,
    }


def print_status(store: ProgressStore) -> int:
    try:
        state = store.load()
    except CheckpointError as error:
        sys.stderr.write(f"relay backfill: {error}\n")
        return EXIT_ERROR
    sys.stdout.write(json.dumps(describe_state(state, store.describe()), indent=2) + "\n")
    return EXIT_OK


def _time_of(position: Position | None) -> dict[str, int] | None:
    if position is None or position.cluster_time is None:
        return None
    return {"t": position.cluster_time.time, "i": position.cluster_time.inc}

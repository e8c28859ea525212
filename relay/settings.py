"""The relay's configuration: environment variables parsed once into a typed, validated object.

Every problem is reported as a `SettingsError` naming the variable and the expected form; nothing
else in the relay reads `os.environ` (AWS clients read the standard AWS variables themselves).
The typed readers are the shared layer's (`reaction_runtime.env`); none are written here.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from change_contract import DEFAULT_MAX_REQUEST_BYTES
from change_contract.constants import MAX_ENTRIES_PER_REQUEST
from reaction_runtime.env import (
    ConfigError,
    env_bool,
    env_enum,
    env_float,
    env_int,
    env_optional,
    env_present,
    env_str,
)

FullDocument = Literal["default", "updateLookup", "whenAvailable", "required"]
BeforeChange = Literal["off", "whenAvailable", "required"]

# Changes per getMore. Bounds what pymongo buffers, and lets the read-ahead thread
# (relay/prefetch.py) overlap the server's next batch with the relay's work on this one.
DEFAULT_READ_BATCH_SIZE = 1000

_RELAY_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class SettingsError(ConfigError):
    """A setting is missing or malformed; `variable` names the environment variable."""

    @property
    def variable(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class WatchScope:
    """What the change stream covers: a deployment, a database, or collections of one database."""

    database: str | None
    collections: tuple[str, ...]

    @property
    def level(self) -> Literal["deployment", "database", "collection", "collections"]:
        if self.database is None:
            return "deployment"
        if not self.collections:
            return "database"
        return "collection" if len(self.collections) == 1 else "collections"

    def describe(self) -> dict[str, Any]:
        return {"level": self.level, "db": self.database, "collections": list(self.collections)}


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Everything the relay is told by its environment. Build with `RelaySettings.from_env`."""

    mongodb_uri: str
    scope: WatchScope
    event_bus_name: str
    event_source: str
    relay_id: str
    checkpoint_table: str | None = None
    watch_match: Mapping[str, Any] | None = None
    full_document: FullDocument = "updateLookup"
    full_document_before_change: BeforeChange = "off"
    checkpoint_store: Literal["dynamodb", "mongodb"] = "dynamodb"
    checkpoint_database: str = "relay"
    checkpoint_collection: str = "relay_checkpoints"
    checkpoint_interval_seconds: float = 1.0
    batch_max_entries: int = MAX_ENTRIES_PER_REQUEST
    max_in_flight_requests: int = 8
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    put_events_timeout_seconds: float = 10.0
    put_events_client: Literal["lean", "botocore"] = "lean"
    retry_base_seconds: float = 0.1
    retry_max_seconds: float = 20.0
    max_await_time_ms: int = 1000
    read_batch_size: int = DEFAULT_READ_BATCH_SIZE
    reconnect_max_seconds: float = 30.0
    on_history_lost: Literal["fail", "restart"] = "fail"
    on_invalidate: Literal["restart", "stop"] = "restart"
    oversize_bucket: str | None = None
    oversize_prefix: str = "relay-oversize/"
    dlq_queue_url: str | None = None
    on_permanent_failure: Literal["dlq", "halt"] = "dlq"
    lease_enabled: bool = False
    lease_seconds: float = 30.0
    stop_deadline_seconds: float = 25.0
    health_file: str = "/tmp/relay-health.json"
    health_max_age_seconds: float = 60.0
    metrics_interval_seconds: float = 60.0
    metrics_namespace: str = "MongoChangeReactions"
    service_name: str = "relay"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "RelaySettings":
        """Parse and validate; raise `SettingsError` on the first problem found."""
        try:
            return cls._parse(env)
        except SettingsError:
            raise
        except ConfigError as error:
            # A shared reader's error, given the relay's type so callers catch one kind.
            raise SettingsError(error.name, error.problem) from error

    @classmethod
    def _parse(cls, env: Mapping[str, str]) -> "RelaySettings":
        # Required: where to read, where to write, who we are.
        mongodb_uri = env_str("MONGODB_URI", environ=env)
        if not mongodb_uri.startswith(("mongodb://", "mongodb+srv://")):
            raise SettingsError("MONGODB_URI", "must start with mongodb:// or mongodb+srv://")
        scope = _scope(env)
        relay_id = env_str("RELAY_ID", environ=env)
        if not _RELAY_ID.fullmatch(relay_id):
            raise SettingsError("RELAY_ID", "use 1-128 letters, digits, '.', '_', ':' or '-'")
        checkpoint_store = _choice(env, "CHECKPOINT_STORE", ("dynamodb", "mongodb"), "dynamodb")
        lease_enabled = env_bool("LEASE_ENABLED", False, environ=env)
        checkpoint_table = env_optional("CHECKPOINT_TABLE", environ=env)
        if checkpoint_table is None and (checkpoint_store == "dynamodb" or lease_enabled):
            raise SettingsError(
                "CHECKPOINT_TABLE",
                "is required (the DynamoDB table holding checkpoints and the lease)",
            )

        full_document = _choice(
            env,
            "FULL_DOCUMENT",
            ("default", "updateLookup", "whenAvailable", "required"),
            "updateLookup",
        )
        before_change = _choice(
            env, "FULL_DOCUMENT_BEFORE_CHANGE", ("off", "whenAvailable", "required"), "off"
        )
        lease_seconds = env_float("LEASE_SECONDS", 30.0, minimum=3.0, environ=env)
        settings = cls(
            mongodb_uri=mongodb_uri,
            scope=scope,
            event_bus_name=env_str("EVENT_BUS_NAME", environ=env),
            event_source=env_str("EVENT_SOURCE", environ=env),
            relay_id=relay_id,
            checkpoint_table=checkpoint_table,
            watch_match=_match(env_optional("WATCH_MATCH", environ=env)),
            full_document=full_document,  # type: ignore[arg-type]
            full_document_before_change=before_change,  # type: ignore[arg-type]
            checkpoint_store=checkpoint_store,  # type: ignore[arg-type]
            checkpoint_database=env_str("CHECKPOINT_DATABASE", "relay", environ=env),
            checkpoint_collection=env_str(
                "CHECKPOINT_COLLECTION", "relay_checkpoints", environ=env
            ),
            checkpoint_interval_seconds=env_float(
                "CHECKPOINT_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=300, environ=env
            ),
            batch_max_entries=env_int(
                "BATCH_MAX_ENTRIES",
                MAX_ENTRIES_PER_REQUEST,
                minimum=1,
                maximum=MAX_ENTRIES_PER_REQUEST,
                environ=env,
            ),
            max_in_flight_requests=env_int(
                "MAX_IN_FLIGHT_REQUESTS", 8, minimum=1, maximum=64, environ=env
            ),
            max_request_bytes=env_int(
                "MAX_REQUEST_BYTES",
                DEFAULT_MAX_REQUEST_BYTES,
                minimum=4096,
                maximum=16 * DEFAULT_MAX_REQUEST_BYTES,
                environ=env,
            ),
            put_events_timeout_seconds=env_float(
                "PUT_EVENTS_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=300, environ=env
            ),
            put_events_client=_choice(  # type: ignore[arg-type]
                env, "PUT_EVENTS_CLIENT", ("lean", "botocore"), "lean"
            ),
            retry_base_seconds=env_float("RETRY_BASE_SECONDS", 0.1, minimum=0.001, environ=env),
            retry_max_seconds=env_float("RETRY_MAX_SECONDS", 20.0, minimum=0.01, environ=env),
            max_await_time_ms=env_int(
                "MAX_AWAIT_TIME_MS", 1000, minimum=10, maximum=60_000, environ=env
            ),
            read_batch_size=env_int(
                "READ_BATCH_SIZE", DEFAULT_READ_BATCH_SIZE, minimum=1, maximum=100_000, environ=env
            ),
            reconnect_max_seconds=env_float(
                "RECONNECT_MAX_SECONDS", 30.0, minimum=0.1, environ=env
            ),
            on_history_lost=_choice(env, "ON_HISTORY_LOST", ("fail", "restart"), "fail"),  # type: ignore[arg-type]
            on_invalidate=_choice(env, "ON_INVALIDATE", ("restart", "stop"), "restart"),  # type: ignore[arg-type]
            oversize_bucket=env_optional("OVERSIZE_BUCKET", environ=env),
            oversize_prefix=env_str("OVERSIZE_PREFIX", "relay-oversize/", environ=env),
            dlq_queue_url=env_optional("DLQ_QUEUE_URL", environ=env),
            on_permanent_failure=_choice(env, "ON_PERMANENT_FAILURE", ("dlq", "halt"), "dlq"),  # type: ignore[arg-type]
            lease_enabled=lease_enabled,
            lease_seconds=lease_seconds,
            stop_deadline_seconds=env_float(
                "STOP_DEADLINE_SECONDS", 25.0, minimum=1.0, maximum=600, environ=env
            ),
            health_file=env_str("HEALTH_FILE", "/tmp/relay-health.json", environ=env),
            health_max_age_seconds=env_float(
                "HEALTH_MAX_AGE_SECONDS", 60.0, minimum=1.0, environ=env
            ),
            metrics_interval_seconds=env_float(
                "METRICS_INTERVAL_SECONDS", 60.0, minimum=0.1, maximum=3600, environ=env
            ),
            metrics_namespace=env_str(
                "POWERTOOLS_METRICS_NAMESPACE", "MongoChangeReactions", environ=env
            ),
            service_name=env_str("POWERTOOLS_SERVICE_NAME", "relay", environ=env),
        )
        if settings.retry_max_seconds < settings.retry_base_seconds:
            raise SettingsError("RETRY_MAX_SECONDS", "must not be below RETRY_BASE_SECONDS")
        return settings


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    # The relay's choices are spelled exactly as MongoDB and the README spell them.
    return env_enum(name, allowed, default, ignore_case=False, environ=env)


def _scope(env: Mapping[str, str]) -> WatchScope:
    # Both must be set; empty widens the watch (see README 'The relay').
    database = env_present("WATCH_DATABASE", environ=env)
    collections = tuple(
        name.strip()
        for name in env_present("WATCH_COLLECTIONS", environ=env).split(",")
        if name.strip()
    )
    if not database and collections:
        raise SettingsError(
            "WATCH_COLLECTIONS", "needs WATCH_DATABASE (collections belong to one database)"
        )
    if any(char in database for char in '/\\. "$') or len(database) > 63:
        raise SettingsError("WATCH_DATABASE", f"{database!r} is not a valid database name")
    for name in collections:
        if "$" in name or name.startswith("system."):
            raise SettingsError("WATCH_COLLECTIONS", f"{name!r} is not a collection to watch")
    if len(set(collections)) != len(collections):
        raise SettingsError("WATCH_COLLECTIONS", "lists a collection twice")
    return WatchScope(database=database or None, collections=collections)


def _match(text: str | None) -> Mapping[str, Any] | None:
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError("WATCH_MATCH", f"is not valid JSON: {error.msg}") from error
    if not isinstance(parsed, dict):
        raise SettingsError("WATCH_MATCH", "must be a JSON object (the body of a $match stage)")
    return parsed

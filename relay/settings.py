"""The relay's configuration: environment variables parsed once into a typed, validated object.

Every problem is reported as a `SettingsError` naming the variable and the expected form; nothing
else in the relay reads `os.environ` (AWS clients read the standard AWS variables themselves).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from change_contract import DEFAULT_MAX_REQUEST_BYTES
from change_contract.constants import MAX_ENTRIES_PER_REQUEST

FullDocument = Literal["default", "updateLookup", "whenAvailable", "required"]
BeforeChange = Literal["off", "whenAvailable", "required"]

_RELAY_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


class SettingsError(ValueError):
    """A setting is missing or malformed; `variable` names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


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
        reader = _Reader(env)

        # Required: where to read, where to write, who we are.
        mongodb_uri = reader.required("MONGODB_URI")
        if not mongodb_uri.startswith(("mongodb://", "mongodb+srv://")):
            raise SettingsError("MONGODB_URI", "must start with mongodb:// or mongodb+srv://")
        scope = _scope(reader)
        relay_id = reader.required("RELAY_ID")
        if not _RELAY_ID.fullmatch(relay_id):
            raise SettingsError("RELAY_ID", "use 1-128 letters, digits, '.', '_', ':' or '-'")
        checkpoint_store = reader.choice("CHECKPOINT_STORE", ("dynamodb", "mongodb"), "dynamodb")
        lease_enabled = reader.boolean("LEASE_ENABLED", False)
        checkpoint_table = reader.optional("CHECKPOINT_TABLE")
        if checkpoint_table is None and (checkpoint_store == "dynamodb" or lease_enabled):
            raise SettingsError(
                "CHECKPOINT_TABLE",
                "is required (the DynamoDB table holding checkpoints and the lease)",
            )

        full_document = reader.choice(
            "FULL_DOCUMENT",
            ("default", "updateLookup", "whenAvailable", "required"),
            "updateLookup",
        )
        before_change = reader.choice(
            "FULL_DOCUMENT_BEFORE_CHANGE", ("off", "whenAvailable", "required"), "off"
        )
        lease_seconds = reader.number("LEASE_SECONDS", 30.0, minimum=3.0)
        settings = cls(
            mongodb_uri=mongodb_uri,
            scope=scope,
            event_bus_name=reader.required("EVENT_BUS_NAME"),
            event_source=reader.required("EVENT_SOURCE"),
            relay_id=relay_id,
            checkpoint_table=checkpoint_table,
            watch_match=_match(reader.optional("WATCH_MATCH")),
            full_document=full_document,  # type: ignore[arg-type]
            full_document_before_change=before_change,  # type: ignore[arg-type]
            checkpoint_store=checkpoint_store,  # type: ignore[arg-type]
            checkpoint_database=reader.optional("CHECKPOINT_DATABASE") or "relay",
            checkpoint_collection=reader.optional("CHECKPOINT_COLLECTION") or "relay_checkpoints",
            checkpoint_interval_seconds=reader.number(
                "CHECKPOINT_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=300
            ),
            batch_max_entries=reader.integer(
                "BATCH_MAX_ENTRIES", MAX_ENTRIES_PER_REQUEST, 1, MAX_ENTRIES_PER_REQUEST
            ),
            max_in_flight_requests=reader.integer("MAX_IN_FLIGHT_REQUESTS", 8, 1, 64),
            max_request_bytes=reader.integer(
                "MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, 4096, 16 * DEFAULT_MAX_REQUEST_BYTES
            ),
            put_events_timeout_seconds=reader.number(
                "PUT_EVENTS_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=300
            ),
            put_events_client=reader.choice(  # type: ignore[arg-type]
                "PUT_EVENTS_CLIENT", ("lean", "botocore"), "lean"
            ),
            retry_base_seconds=reader.number("RETRY_BASE_SECONDS", 0.1, minimum=0.001),
            retry_max_seconds=reader.number("RETRY_MAX_SECONDS", 20.0, minimum=0.01),
            max_await_time_ms=reader.integer("MAX_AWAIT_TIME_MS", 1000, 10, 60_000),
            reconnect_max_seconds=reader.number("RECONNECT_MAX_SECONDS", 30.0, minimum=0.1),
            on_history_lost=reader.choice("ON_HISTORY_LOST", ("fail", "restart"), "fail"),  # type: ignore[arg-type]
            on_invalidate=reader.choice("ON_INVALIDATE", ("restart", "stop"), "restart"),  # type: ignore[arg-type]
            oversize_bucket=reader.optional("OVERSIZE_BUCKET"),
            oversize_prefix=reader.optional("OVERSIZE_PREFIX") or "relay-oversize/",
            dlq_queue_url=reader.optional("DLQ_QUEUE_URL"),
            on_permanent_failure=reader.choice("ON_PERMANENT_FAILURE", ("dlq", "halt"), "dlq"),  # type: ignore[arg-type]
            lease_enabled=lease_enabled,
            lease_seconds=lease_seconds,
            stop_deadline_seconds=reader.number(
                "STOP_DEADLINE_SECONDS", 25.0, minimum=1.0, maximum=600
            ),
            health_file=reader.optional("HEALTH_FILE") or "/tmp/relay-health.json",
            health_max_age_seconds=reader.number("HEALTH_MAX_AGE_SECONDS", 60.0, minimum=1.0),
            metrics_interval_seconds=reader.number(
                "METRICS_INTERVAL_SECONDS", 60.0, minimum=0.1, maximum=3600
            ),
            metrics_namespace=reader.optional("POWERTOOLS_METRICS_NAMESPACE")
            or "MongoChangeReactions",
            service_name=reader.optional("POWERTOOLS_SERVICE_NAME") or "relay",
        )
        if settings.retry_max_seconds < settings.retry_base_seconds:
            raise SettingsError("RETRY_MAX_SECONDS", "must not be below RETRY_BASE_SECONDS")
        return settings


def _scope(reader: "_Reader") -> WatchScope:
    database = reader.present("WATCH_DATABASE").strip()
    collections = tuple(
        name.strip() for name in reader.present("WATCH_COLLECTIONS").split(",") if name.strip()
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


class _Reader:
    """Typed access to the environment; every failure names its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def present(self, name: str) -> str:
        """A variable that must be set, though it may be empty (empty has a meaning)."""
        if name not in self._env:
            raise SettingsError(name, "is required (it may be set empty; see README 'The relay')")
        return self._env[name]

    def required(self, name: str) -> str:
        value = self._env.get(name, "").strip()
        if not value:
            raise SettingsError(name, "is required and must not be empty")
        return value

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.optional(name)
        if value is None:
            return default
        if value not in allowed:
            raise SettingsError(name, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._env.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(name, f"must be true or false; got {value!r}")

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError as error:
            raise SettingsError(name, f"must be a whole number; got {value!r}") from error
        if not minimum <= number <= maximum:
            raise SettingsError(name, f"must be between {minimum} and {maximum}; got {number}")
        return number

    def number(
        self, name: str, default: float, *, minimum: float, maximum: float = float("inf")
    ) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError as error:
            raise SettingsError(name, f"must be a number; got {value!r}") from error
        if not minimum <= number <= maximum:
            raise SettingsError(name, f"must be between {minimum:g} and {maximum:g}; got {value}")
        return number

"""The audit writer's settings, read once from the environment into a typed, frozen object.

Parsing fails fast with a `ConfigError` naming the variable and the expected form; nothing here
connects to anything.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from reaction_runtime.env import ConfigError, env_csv, env_enum, env_optional, env_str

DEFAULT_DATABASE = "clase"
DEFAULT_COLLECTION = "audit_log"
DEFAULT_ACTOR_FIELDS = ("updatedBy", "modifiedBy", "createdBy")


class StoreKind(StrEnum):
    MONGODB = "mongodb"
    DYNAMODB = "dynamodb"


class DocumentPolicy(StrEnum):
    """What the audit record keeps of a full document (post-image or pre-image)."""

    KEEP = "keep"
    DROP = "drop"
    REDACT = "redact"


@dataclass(frozen=True, slots=True)
class RecordSettings:
    """How a change event becomes an audit record; independent of where it is stored."""

    actor_fields: tuple[str, ...] = DEFAULT_ACTOR_FIELDS
    full_document: DocumentPolicy = DocumentPolicy.KEEP
    before_change: DocumentPolicy = DocumentPolicy.KEEP
    redact_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """Everything the audit writer reads from its environment."""

    store: StoreKind
    record: RecordSettings
    database: str = DEFAULT_DATABASE
    collection: str = DEFAULT_COLLECTION
    table: str | None = None
    mongodb_uri: str | None = None
    mongodb_uri_secret_arn: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "AuditSettings":
        """Read and check the `AUDIT_*` and `MONGODB_URI*` variables."""
        record = RecordSettings(
            actor_fields=_paths("AUDIT_ACTOR_FIELDS", DEFAULT_ACTOR_FIELDS, environ),
            full_document=_policy("AUDIT_FULL_DOCUMENT", environ),
            before_change=_policy("AUDIT_BEFORE_CHANGE", environ),
            redact_fields=_paths("AUDIT_REDACT_FIELDS", (), environ),
        )
        redacting = DocumentPolicy.REDACT in (record.full_document, record.before_change)
        if redacting and not record.redact_fields:
            raise ConfigError(
                "AUDIT_REDACT_FIELDS",
                "must list the fields to redact (comma-separated paths) when "
                "AUDIT_FULL_DOCUMENT or AUDIT_BEFORE_CHANGE is redact",
            )
        stores = [kind.value for kind in StoreKind]
        store = env_enum("AUDIT_STORE", stores, StoreKind.MONGODB.value, environ=environ)
        settings = cls(
            store=StoreKind(store),
            record=record,
            database=env_str("AUDIT_DATABASE", DEFAULT_DATABASE, environ=environ),
            collection=env_str("AUDIT_COLLECTION", DEFAULT_COLLECTION, environ=environ),
            table=env_optional("AUDIT_TABLE", environ=environ),
            mongodb_uri=env_optional("MONGODB_URI", environ=environ),
            mongodb_uri_secret_arn=env_optional("MONGODB_URI_SECRET_ARN", environ=environ),
        )
        settings.check_store()
        return settings

    def check_store(self) -> None:
        """Fail fast when the chosen store lacks what it needs to connect."""
        if self.store is StoreKind.DYNAMODB and not self.table:
            raise ConfigError("AUDIT_TABLE", "must name a DynamoDB table when AUDIT_STORE=dynamodb")
        if self.store is StoreKind.MONGODB and not (
            self.mongodb_uri or self.mongodb_uri_secret_arn
        ):
            raise ConfigError(
                "MONGODB_URI", "or MONGODB_URI_SECRET_ARN must be set when AUDIT_STORE=mongodb"
            )


def _policy(name: str, environ: Mapping[str, str] | None) -> DocumentPolicy:
    choices = [policy.value for policy in DocumentPolicy]
    return DocumentPolicy(env_enum(name, choices, DocumentPolicy.KEEP.value, environ=environ))


def _paths(
    name: str, default: tuple[str, ...], environ: Mapping[str, str] | None
) -> tuple[str, ...]:
    paths = env_csv(name, default, environ=environ)
    for path in paths:
        if path.startswith(("$", ".")) or path.endswith(".") or ".." in path:
            raise ConfigError(
                name, f"expected field paths like email,cliente.telefono, got {path!r}"
            )
    return paths

"""Powertools Idempotency keyed on `detail.eventId`, persisted in DynamoDB.

EventBridge retries a target for up to 24 h and Lambda's async queue keeps an event up to 6 h, so
records are kept `IDEMPOTENCY_TTL_HOURS` (default 48): any re-delivery finds the first outcome.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    IdempotentHookFunction,
)

from reaction_runtime.env import env_int, env_str

IDEMPOTENCY_KEY_PATH = "detail.eventId"
DEFAULT_TTL_HOURS = 48
# Below this a record could expire while EventBridge still retries the same event.
MIN_TTL_HOURS = 25


@dataclass(frozen=True, slots=True)
class IdempotencySettings:
    table: str
    ttl_hours: int = DEFAULT_TTL_HOURS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "IdempotencySettings":
        return cls(
            table=env_str("IDEMPOTENCY_TABLE", environ=environ),
            ttl_hours=env_int(
                "IDEMPOTENCY_TTL_HOURS", DEFAULT_TTL_HOURS, minimum=MIN_TTL_HOURS, environ=environ
            ),
        )


def idempotency_config(
    settings: IdempotencySettings, *, on_duplicate: IdempotentHookFunction | None = None
) -> IdempotencyConfig:
    """Key on the change's id; an event without one is an error, never processed unguarded."""
    return IdempotencyConfig(
        event_key_jmespath=IDEMPOTENCY_KEY_PATH,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=settings.ttl_hours * 3600,
        response_hook=on_duplicate,
    )


def persistence_layer(settings: IdempotencySettings, client: Any) -> DynamoDBPersistenceLayer:
    """The Powertools default layout: partition key `id` (S), TTL attribute `expiration`."""
    return DynamoDBPersistenceLayer(table_name=settings.table, boto3_client=client)

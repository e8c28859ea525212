"""What every reaction function shares: settings readers, observability, AWS clients,
idempotency, the error policy and SNS publishing. Shipped in the shared layer.

It must never hold a function's business rules: those live in each function's own package.
"""

from reaction_runtime.clients import RETRY_CONFIG, Clients
from reaction_runtime.documents import document_id_text
from reaction_runtime.env import (
    ConfigError,
    env_bool,
    env_csv,
    env_enum,
    env_int,
    env_optional,
    env_str,
)
from reaction_runtime.errors import ContractError, DownstreamError
from reaction_runtime.idempotency import IDEMPOTENCY_KEY_PATH, IdempotencySettings
from reaction_runtime.observability import DEFAULT_METRICS_NAMESPACE, Observability, observability
from reaction_runtime.ordering import cluster_time_number, cluster_time_text, replay_name
from reaction_runtime.runtime import Action, Outcome, ReactionRuntime
from reaction_runtime.sns import (
    SMS_MAX_BYTES,
    SUBJECT_MAX_CHARS,
    SnsMessage,
    SnsPublisher,
    fit_bytes,
    fit_chars,
    one_line,
    subject_line,
)

__all__ = [
    "DEFAULT_METRICS_NAMESPACE",
    "IDEMPOTENCY_KEY_PATH",
    "RETRY_CONFIG",
    "SMS_MAX_BYTES",
    "SUBJECT_MAX_CHARS",
    "Action",
    "Clients",
    "ConfigError",
    "ContractError",
    "DownstreamError",
    "IdempotencySettings",
    "Observability",
    "Outcome",
    "ReactionRuntime",
    "SnsMessage",
    "SnsPublisher",
    "cluster_time_number",
    "cluster_time_text",
    "document_id_text",
    "env_bool",
    "env_csv",
    "env_enum",
    "env_int",
    "env_optional",
    "env_str",
    "fit_bytes",
    "fit_chars",
    "observability",
    "one_line",
    "replay_name",
    "subject_line",
]

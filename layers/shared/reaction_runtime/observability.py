"""The Powertools Logger, Tracer and Metrics of one function, set up the same way everywhere.

The service name comes from `POWERTOOLS_SERVICE_NAME` (else the function's own name), the metrics
namespace from `POWERTOOLS_METRICS_NAMESPACE` (else `MongoChangeReactions`).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics, Tracer

from reaction_runtime.env import env_str

DEFAULT_METRICS_NAMESPACE = "MongoChangeReactions"


@dataclass(frozen=True, slots=True)
class Observability:
    """What a handler decorates itself with, and what the logic logs and counts through."""

    service: str
    logger: Logger
    tracer: Tracer
    metrics: Metrics


def observability(function: str, *, environ: Mapping[str, str] | None = None) -> Observability:
    service = env_str("POWERTOOLS_SERVICE_NAME", function, environ=environ)
    namespace = env_str("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE, environ=environ)
    return Observability(
        service=service,
        logger=Logger(service=service),
        tracer=Tracer(service=service),
        metrics=Metrics(namespace=namespace, service=service),
    )

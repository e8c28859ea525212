"""Lambda entry point of the update notifier: decorators and one hand-off, nothing else.

Settings, the runtime and the SNS client are made once per container, at cold start. The logic
is in the `update_notifier` package; the shared runtime decodes, de-duplicates and counts.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from reaction_runtime import ReactionRuntime, SnsPublisher
from update_notifier import UpdateNotifierService, UpdateNotifierSettings

runtime = ReactionRuntime("update_notifier")
settings = UpdateNotifierSettings.from_env()
logger, tracer, metrics = runtime.logger, runtime.tracer, runtime.metrics

service = UpdateNotifierService(
    settings,
    publisher=SnsPublisher(runtime.clients.get("sns"), settings.topic_arn, logger),
    logger=logger,
    count=runtime.count,
)

react = tracer.capture_method(service.react)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runtime.handle(event, context, react)

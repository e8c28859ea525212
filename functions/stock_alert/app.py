"""Lambda entry point of the stock alert: decorators and one hand-off, nothing else.

Settings, the runtime and the AWS clients are made once per container, at cold start. The
logic is in the `stock_alert` package; the shared runtime decodes, de-duplicates and counts.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from reaction_runtime import ReactionRuntime, SnsPublisher
from stock_alert import AlertStateStore, StockAlertService, StockAlertSettings

runtime = ReactionRuntime("stock_alert")
settings = StockAlertSettings.from_env()
logger, tracer, metrics = runtime.logger, runtime.tracer, runtime.metrics

service = StockAlertService(
    settings,
    publisher=SnsPublisher(runtime.clients.get("sns"), settings.topic_arn, logger),
    state=(
        AlertStateStore(runtime.clients.get("dynamodb"), settings.state_table, logger)
        if settings.state_table
        else None
    ),
    logger=logger,
    count=runtime.count,
)

react = tracer.capture_method(service.react)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runtime.handle(event, context, react)

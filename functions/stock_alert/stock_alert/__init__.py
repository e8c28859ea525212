"""Stock alerts: a product at or below its threshold pages people through SNS, once per episode.

Logic only; `app.py` is the Lambda entry point. Nothing here reads the environment except
`StockAlertSettings.from_env`, called once by the handler module.
"""

from stock_alert.messages import Alert, alert_message
from stock_alert.quantity import Level, Reading, classify, read_number
from stock_alert.service import StockAlertService
from stock_alert.settings import StockAlertSettings
from stock_alert.state import AlertStateStore, Decision

__all__ = [
    "Alert",
    "AlertStateStore",
    "Decision",
    "Level",
    "Reading",
    "StockAlertService",
    "StockAlertSettings",
    "alert_message",
    "classify",
    "read_number",
]

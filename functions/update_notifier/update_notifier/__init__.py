"""Change notifications: what an update (or, by setting, a replace) changed, published to SNS.

Logic only; `app.py` is the Lambda entry point.
"""

from update_notifier.messages import Notification, change_message, readable, render_value
from update_notifier.service import UpdateNotifierService
from update_notifier.settings import UpdateNotifierSettings
from update_notifier.summary import (
    UNKNOWN,
    ChangeSummary,
    FieldChange,
    summarize_replace,
    summarize_update,
)

__all__ = [
    "UNKNOWN",
    "ChangeSummary",
    "FieldChange",
    "Notification",
    "UpdateNotifierService",
    "UpdateNotifierSettings",
    "change_message",
    "readable",
    "render_value",
    "summarize_replace",
    "summarize_update",
]

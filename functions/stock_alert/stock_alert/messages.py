"""The text of a stock alert: one SNS message with default, email and SMS variants, es or en.

Only what an operator needs to act: product, level, quantity, threshold, where and when. The
product document itself is never copied into the message.
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from reaction_runtime import SMS_MAX_BYTES, SnsMessage, fit_bytes, fit_chars, one_line
from stock_alert.quantity import Level, format_number
from stock_alert.settings import Language

# Long product names are cut so the essentials (level, quantity) always fit.
NAME_MAX_CHARS = 60


@dataclass(frozen=True, slots=True)
class Alert:
    """A decided alert, with everything its message shows."""

    level: Level
    product_name: str | None
    product_id: str
    quantity: Decimal
    threshold: Decimal
    database: str
    collection: str
    when: dt.datetime
    event_id: str
    replay_name: str | None = None


_TEXT: dict[Language, dict[str, str]] = {
    "es": {
        Level.LOW_STOCK.value: "Stock bajo",
        Level.OUT_OF_STOCK.value: "Sin stock",
        "unnamed": "(producto sin nombre)",
        "short": "{title} ({quantity}, umbral {threshold}): {name}",
        "default": (
            "{title}: {name} tiene {quantity} unidades (umbral {threshold}). "
            "Producto {product_id} en {namespace}, {when}."
        ),
        "email": (
            "Alerta de inventario: {title_lower}.\n"
            "\n"
            "Producto: {name}\n"
            "Cantidad: {quantity}\n"
            "Umbral: {threshold}\n"
            "Nivel: {level}\n"
            "Colección: {namespace}\n"
            "Id del documento: {product_id}\n"
            "Fecha: {when}\n"
            "Evento: {event_id}\n"
        ),
        "replay": "Reenviado desde el archivo de eventos ({replay}).\n",
    },
    "en": {
        Level.LOW_STOCK.value: "Low stock",
        Level.OUT_OF_STOCK.value: "Out of stock",
        "unnamed": "(unnamed product)",
        "short": "{title} ({quantity}, threshold {threshold}): {name}",
        "default": (
            "{title}: {name} has {quantity} units (threshold {threshold}). "
            "Product {product_id} in {namespace}, {when}."
        ),
        "email": (
            "Inventory alert: {title_lower}.\n"
            "\n"
            "Product: {name}\n"
            "Quantity: {quantity}\n"
            "Threshold: {threshold}\n"
            "Level: {level}\n"
            "Collection: {namespace}\n"
            "Document id: {product_id}\n"
            "Time: {when}\n"
            "Event: {event_id}\n"
        ),
        "replay": "Re-delivered from the event archive ({replay}).\n",
    },
}


def alert_message(alert: Alert, language: Language) -> SnsMessage:
    text = _TEXT[language]
    title = text[alert.level.value]
    name = fit_chars(alert.product_name, NAME_MAX_CHARS) if alert.product_name else ""
    values = {
        "title": title,
        "title_lower": title.lower(),
        "name": name or text["unnamed"],
        "quantity": format_number(alert.quantity),
        "threshold": format_number(alert.threshold),
        "level": alert.level.value,
        "namespace": f"{alert.database}.{alert.collection}",
        "product_id": alert.product_id,
        "when": alert.when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "event_id": alert.event_id,
    }
    email = text["email"].format(**values)
    if alert.replay_name:
        email += text["replay"].format(replay=one_line(alert.replay_name))
    return SnsMessage(
        texts={
            "default": text["default"].format(**values),
            "email": email,
            "sms": fit_bytes(text["short"].format(**values), SMS_MAX_BYTES),
        },
        subject=text["short"].format(**values),
        attributes={
            "severity": alert.level.value,
            "collection": alert.collection,
            "productId": alert.product_id,
        },
    )

"""The stock alert decides from the product as of each change, not from the looked-up document.

An update's `fullDocument` (`updateLookup`) is read when the relay reads the event and may show
later changes; the update description (with the pre-image, the whole post-image) is this change.
"""

from typing import Any

import boto3
import pytest

from change_contract import ContractError, encode_change
from localdev.samples import BUS_NAME, PAN, change, lambda_event, product, update_description
from tests.unit.functions.test_stock_alert import STATE_TABLE, levels, published, stock_env

__all__ = ["stock_env"]  # the fixture, imported for the tests below


@pytest.fixture
def app(stock_env, load_app):
    return load_app("stock_alert")


def update_event(
    seconds: int,
    updated: dict[str, Any],
    *,
    looked_up: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
    removed: list[str] | None = None,
) -> dict[str, Any]:
    """An update of "Pan de molde" setting `updated`, whose lookup found `looked_up` (None: the
    document was deleted before the lookup) and whose pre-image is `before` (None: none)."""
    fields: dict[str, Any] = {
        "fullDocument": looked_up,
        "updateDescription": update_description(updated, removed),
    }
    if before is not None:
        fields["fullDocumentBeforeChange"] = before
    document = change("update", seconds, document_id=PAN, **fields)
    return lambda_event(encode_change(document, bus_name=BUS_NAME, fast=False).entry)


def pan(quantity: Any, **extra: Any) -> dict[str, Any]:
    return product(PAN, "Pan de molde", quantity, **extra)


def state_items() -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=STATE_TABLE)["Items"]


def test_with_pre_image_the_update_itself_decides_not_a_later_lookup(app, lambda_context):
    # GIVEN a sale 4 -> 0 whose looked-up document already shows a later restock to 40
    event = update_event(10, {"cantidad": 0}, looked_up=pan(40), before=pan(4))

    # WHEN handled
    result = app.handler(event, lambda_context)

    # THEN it pages OUT_OF_STOCK with the quantity of the change itself
    assert (result["outcome"], result["level"]) == ("alerted", "OUT_OF_STOCK")
    (message,) = published()
    assert "tiene 0 unidades" in message["texts"]["default"]


def test_with_pre_images_a_burst_of_sales_pages_once_at_the_right_sale(app, lambda_context):
    # GIVEN 25 -> 11 -> 10, both events looked up after the second sale (10 units)
    first = update_event(10, {"cantidad": 11}, looked_up=pan(10), before=pan(25))
    second = update_event(11, {"cantidad": 10}, looked_up=pan(10), before=pan(11))

    # WHEN both are handled in order
    outcomes = [app.handler(event, lambda_context)["outcome"] for event in (first, second)]

    # THEN only the sale that reached the threshold pages (the lookup would page both)
    assert outcomes == ["no alert", "alerted"]
    assert levels(published()) == ["LOW_STOCK"]


def test_without_pre_image_the_own_quantity_is_laid_over_the_lookup(app, lambda_context):
    # GIVEN an open episode (8 units), then a sale to 0 whose lookup shows a restock to 40
    app.handler(update_event(10, {"cantidad": 8}, looked_up=pan(8)), lambda_context)
    event = update_event(11, {"cantidad": 0, "updatedBy": "caja-01"}, looked_up=pan(40))

    # WHEN the sale is handled
    result = app.handler(event, lambda_context)

    # THEN it escalates to OUT_OF_STOCK: the quantity is this update's own
    assert result["outcome"] == "alerted"
    assert levels(published()) == ["LOW_STOCK", "OUT_OF_STOCK"]
    assert "Pan de molde" in published()[1]["texts"]["sms"]  # the name comes from the lookup


def test_lookup_null_uses_the_updated_fields_alone(app, lambda_context):
    # GIVEN a sale to 3 units of a product deleted before the relay looked it up
    event = update_event(10, {"cantidad": 3}, looked_up=None)

    # WHEN handled THEN it pages from the update's own quantity (the name is unknown)
    assert app.handler(event, lambda_context)["level"] == "LOW_STOCK"
    (message,) = published()
    assert message["texts"]["sms"] == "Stock bajo (3, umbral 10): (producto sin nombre)"


def test_lookup_null_without_the_quantity_is_no_document(app, lambda_context):
    event = update_event(10, {"precio": 2}, looked_up=None)

    assert app.handler(event, lambda_context) == {"outcome": "skipped", "reason": "no document"}
    assert published() == []


def test_update_leaving_the_quantity_alone_decides_nothing_without_pre_image(app, lambda_context):
    # GIVEN a price change whose lookup shows a later sale down to 0 units
    price = update_event(10, {"precio": 2}, looked_up=pan(0, precio=2))
    sale_to_five = update_event(11, {"cantidad": 5}, looked_up=pan(0, precio=2))
    sale_to_zero = update_event(12, {"cantidad": 0}, looked_up=pan(0, precio=2))

    # WHEN the price change is handled, then the two sales
    result = app.handler(price, lambda_context)
    state_after_price = state_items()
    app.handler(sale_to_five, lambda_context)
    app.handler(sale_to_zero, lambda_context)

    # THEN the price change pages nothing and records no state; each sale pages its own level
    assert result == {
        "outcome": "no alert",
        "reason": "quantity unchanged",
        "level": "OUT_OF_STOCK",
    }
    assert state_after_price == []
    assert levels(published()) == ["LOW_STOCK", "OUT_OF_STOCK"]


def test_removing_the_quantity_is_a_quantity_change(app, lambda_context):
    event = update_event(10, {}, removed=["cantidad"], looked_up=pan(3))

    assert app.handler(event, lambda_context)["reason"] == "quantity not numeric"
    assert state_items() == []


def test_every_mode_pages_a_low_product_changed_elsewhere_from_the_lookup(
    stock_env, load_app, lambda_context, monkeypatch
):
    # GIVEN every mode and a price change of a low product, without pre-image
    monkeypatch.setenv("ALERT_MODE", "every")
    monkeypatch.delenv("ALERT_STATE_TABLE")
    app = load_app("stock_alert")
    event = update_event(10, {"precio": 2}, looked_up=pan(4, precio=2))

    # WHEN handled THEN it pages, as every change at or below the threshold does
    assert app.handler(event, lambda_context)["outcome"] == "alerted"


def test_a_changed_per_document_threshold_is_decided(
    stock_env, load_app, lambda_context, monkeypatch
):
    # GIVEN a per-document threshold raised to 20 on a product of 15 units, without pre-image
    monkeypatch.setenv("THRESHOLD_FIELD", "stockMinimo")
    app = load_app("stock_alert")
    event = update_event(10, {"stockMinimo": 20}, looked_up=pan(15, stockMinimo=20))

    # WHEN handled THEN the product is low against its new threshold
    assert app.handler(event, lambda_context)["outcome"] == "alerted"
    assert "umbral 20" in published()[0]["texts"]["sms"]


def test_a_dotted_quantity_set_through_its_parent(stock_env, load_app, lambda_context, monkeypatch):
    # GIVEN the quantity at `stock.cantidad`, set by replacing `stock`; the lookup shows 40
    monkeypatch.setenv("QUANTITY_FIELD", "stock.cantidad")
    app = load_app("stock_alert")
    looked_up = {"_id": PAN, "nombreProducto": "Pan de molde", "stock": {"cantidad": 40}}
    event = update_event(10, {"stock": {"cantidad": 2}}, looked_up=looked_up)

    # WHEN handled THEN the update's own value decides
    assert app.handler(event, lambda_context)["level"] == "LOW_STOCK"


def test_a_pre_image_that_does_not_fit_the_update_is_an_invalid_event(app, lambda_context):
    # GIVEN a pre-image where the update's path crosses a plain value
    event = update_event(10, {"cantidad.total": 3}, looked_up=pan(3), before=pan(12))

    # WHEN handled THEN the contract error names the event and nothing is paged
    with pytest.raises(ContractError, match=event["detail"]["eventId"]):
        app.handler(event, lambda_context)
    assert published() == []


def test_a_lookup_that_no_longer_takes_the_update_falls_back_to_its_own_fields(
    stock_env, load_app, lambda_context, monkeypatch, caplog
):
    # GIVEN `stock.cantidad` set to 2, and a later write that made `stock` a plain number
    monkeypatch.setenv("QUANTITY_FIELD", "stock.cantidad")
    app = load_app("stock_alert")
    looked_up = {"_id": PAN, "nombreProducto": "Pan de molde", "stock": 40}
    event = update_event(10, {"stock.cantidad": 2}, looked_up=looked_up)

    # WHEN handled THEN the update's own fields decide, and the mismatch is logged
    assert app.handler(event, lambda_context)["level"] == "LOW_STOCK"
    assert "looked-up document does not take this update" in [r.msg for r in caplog.records]


def test_an_insert_delivered_after_a_price_change_still_pages(app, lambda_context):
    # GIVEN a product inserted low (t=10), then its price changed (t=11, with a pre-image)
    inserted = change("insert", 10, document_id=PAN, fullDocument=pan(8))
    insert = lambda_event(encode_change(inserted, bus_name=BUS_NAME, fast=False).entry)
    price = update_event(11, {"precio": 2}, looked_up=pan(8, precio=2), before=pan(8))

    # WHEN the price change is delivered first
    first = app.handler(price, lambda_context)
    second = app.handler(insert, lambda_context)

    # THEN the price change decides nothing (the level cannot change), so the insert is not
    # stale behind it and pages the episode it opened
    assert (first["outcome"], first["reason"]) == ("no alert", "quantity unchanged")
    assert second["outcome"] == "alerted"
    assert levels(published()) == ["LOW_STOCK"]

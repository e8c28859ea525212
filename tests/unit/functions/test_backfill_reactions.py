"""How the functions react to a backfill read (`python -m relay backfill`), beyond the sample.

A backfill read is an insert of the current document marked `origin: backfill`: stock alerts
evaluate its quantity (opening an episode, never paging an open one twice), update
notifications ignore it. The audit trail's baseline entry is covered in test_audit_*.py.
"""

import pytest
from bson import Timestamp

from change_contract import encode_backfill
from localdev.samples import BUS_NAME, EPOCH, NAMESPACE, PAN, lambda_event, product
from tests.unit.functions.test_stock_alert import (
    levels,
    quantity_event,
    stock_env,  # noqa: F401 - a fixture
)
from tests.unit.functions.test_stock_alert import published as pages
from tests.unit.functions.test_update_notifier import changes_env  # noqa: F401 - a fixture
from tests.unit.functions.test_update_notifier import published as notifications


def backfill_read(seconds: int, quantity: int) -> dict:
    """ "Pan de molde" read by a backfill whose snapshot was taken at EPOCH + seconds."""
    document = product(PAN, "Pan de molde", quantity)
    snapshot = Timestamp(EPOCH + seconds, 1)
    encoded = encode_backfill(document, NAMESPACE, snapshot, bus_name=BUS_NAME, fast=False)
    return lambda_event(encoded.entry)


@pytest.mark.usefixtures("stock_env")
def test_a_low_product_read_by_a_backfill_pages_once(load_app, lambda_context):
    # GIVEN a product already low when the system is deployed
    app = load_app("stock_alert")
    read = backfill_read(10, 4)

    # WHEN its backfill read arrives, is re-sent (same event id), and a later backfill reads it
    first = app.handler(read, lambda_context)
    app.handler(read, lambda_context)
    again = app.handler(backfill_read(20, 3), lambda_context)

    # THEN it opened an episode with one page; the later read found the episode open
    assert first["outcome"] == "alerted"
    assert again["outcome"] == "no alert"
    assert levels(pages()) == ["LOW_STOCK"]


@pytest.mark.usefixtures("stock_env")
def test_a_backfill_read_does_not_page_an_episode_already_open(load_app, lambda_context):
    # GIVEN an episode opened by a real sale
    app = load_app("stock_alert")
    assert app.handler(quantity_event(10, 8), lambda_context)["outcome"] == "alerted"

    # WHEN a backfill (snapshot after the sale) reads the product, still low
    result = app.handler(backfill_read(20, 6), lambda_context)

    # THEN no second page
    assert result["outcome"] == "no alert"
    assert len(pages()) == 1


@pytest.mark.usefixtures("stock_env")
def test_a_backfill_read_of_a_restocked_product_ends_the_episode(load_app, lambda_context):
    # GIVEN an open episode WHEN a backfill reads the product restocked, and it falls again
    app = load_app("stock_alert")
    app.handler(quantity_event(10, 8), lambda_context)
    assert app.handler(backfill_read(20, 40), lambda_context)["outcome"] == "no alert"
    fell = app.handler(quantity_event(30, 5), lambda_context)

    # THEN the fall after the restock pages again: the read closed the episode
    assert fell["outcome"] == "alerted"
    assert levels(pages()) == ["LOW_STOCK", "LOW_STOCK"]


@pytest.mark.usefixtures("changes_env")
def test_update_notifier_ignores_backfill_reads(load_app, lambda_context):
    app = load_app("update_notifier")
    result = app.handler(backfill_read(10, 4), lambda_context)
    assert result["outcome"] == "skipped"
    assert notifications() == []

"""A burst of changes: the whole scenario written without waiting, stock alerts still exact.

When several changes to one product arrive within a fraction of a second, the relay's looked-up
`fullDocument` already shows a later state; the stock alert must decide from the product as of
each change (its update description, with the pre-image), so each expected alert comes once.

The relay here sends one PutEvents at a time, so the functions receive the changes in commit
order and the test isolates the looked-up document from delivery order. Delivery out of order
is a separate, known limit of episode mode (README 'The reactions', "Alert state and order"): an
insert delivered after a newer change of its product is stale and does not page.
"""

from collections.abc import Iterator

import pytest

from localdev.pipeline import (
    COLLECTION,
    DATABASE,
    LocalPipeline,
)
from tests.e2e.helpers import (
    e2e_pipeline,
    expected,
    fresh_scenario,
    observed,
    wait_for_reactions,
    wait_settled,
)


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    # One PutEvents at a time: the functions receive the changes in commit order.
    with e2e_pipeline("e2e-burst", {"MAX_IN_FLIGHT_REQUESTS": "1"}) as running:
        yield running


def test_a_burst_of_the_whole_scenario_pages_each_expected_alert_exactly_once(pipeline):
    # GIVEN the demo's scenario on fresh products
    scenario = fresh_scenario()
    wanted = expected(scenario)
    products = pipeline.mongo[DATABASE][COLLECTION]

    # WHEN every step is written at once, without waiting for any reaction in between
    for step in scenario.steps:
        step.write(products)

    # THEN every expected reaction arrives, and once everything has drained each stock alert
    # (product, level) was paged exactly once, with no other alert for these products
    wait_for_reactions(pipeline, scenario, wanted, deadline_s=60)
    wait_settled(pipeline)
    seen = observed(pipeline, scenario)
    assert seen["alerts"] == wanted["alerts"]
    assert sum(wanted["alerts"].values()) == 5
    # ... and the other reactions are untouched by the burst
    assert seen["notifications"] == wanted["notifications"]
    assert seen["audits"] == wanted["audits"]

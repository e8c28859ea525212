"""Helpers of the end-to-end tests: the pipeline, fresh scenarios, what was observed, waiting."""

import os
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from localdev.pipeline import LocalPipeline, PipelineConfig, missing, running_pipeline, survey
from localdev.scenario import Scenario, build
from localdev.servers import wait_until


def fresh_scenario() -> Scenario:
    """The demo's scenario with product names no other test (or run) uses."""
    return build(tag=f"e2e-{uuid.uuid4().hex[:6]}")


def observed(pipeline: LocalPipeline, scenario: Scenario) -> dict[str, Counter]:
    """The reactions seen so far that belong to this scenario's products."""
    collector = pipeline.collector
    assert collector is not None
    alerts: Counter = Counter()
    for reaction in collector.of_kind("alert"):
        product_id = str(reaction.attributes.get("productId", ""))
        if product_id in scenario.products:
            name = scenario.products[product_id].name
            alerts[(name, reaction.attributes.get("severity"))] += 1
    notifications: Counter = Counter()
    for reaction in collector.of_kind("notification"):
        for key, product in scenario.products.items():
            if reaction.mentions(key) or reaction.mentions(product.name):
                notifications[key] += 1
    audits: Counter = Counter()
    for reaction in collector.of_kind("audit"):
        key = str((reaction.record.get("documentKey") or {}).get("_id"))
        if key in scenario.products:
            audits[(reaction.record.get("operationType"), key)] += 1
    return {"alerts": alerts, "notifications": notifications, "audits": audits}


def expected(scenario: Scenario, steps: range | None = None) -> dict[str, Counter]:
    chosen = scenario.steps if steps is None else [scenario.steps[i] for i in steps]
    return {
        "alerts": Counter((alert.product, alert.level) for step in chosen for alert in step.alerts),
        "notifications": Counter(key for step in chosen for key in step.notifications),
        "audits": Counter(audit for step in chosen for audit in step.audits),
    }


def covers(seen: dict[str, Counter], wanted: dict[str, Counter]) -> bool:
    return all(not (wanted[kind] - seen[kind]) for kind in wanted)


def wait_for_reactions(
    pipeline: LocalPipeline, scenario: Scenario, wanted: dict[str, Counter], deadline_s: float = 40
) -> None:
    def arrived() -> bool:
        return covers(observed(pipeline, scenario), wanted)

    try:
        pipeline.wait_for(arrived, deadline_s=deadline_s, what="the expected reactions")
    except TimeoutError as error:
        seen = observed(pipeline, scenario)
        missing_now = {kind: dict(wanted[kind] - seen[kind]) for kind in wanted}
        raise AssertionError(f"{error}; still missing: {missing_now}") from error


def _queue_depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def wait_settled(pipeline: LocalPipeline, deadline_s: float = 30) -> None:
    """Until nothing is waiting anywhere: function queues, SNS inboxes and the bus tap empty."""
    resources = pipeline.resources
    assert resources is not None
    sqs = pipeline.client("sqs")
    urls = [*resources.function_queues.values(), *resources.inboxes.values()]
    urls.append(resources.tap_queue_url)
    wait_until(
        lambda: all(_queue_depth(sqs, url) == 0 for url in urls),
        deadline_s=deadline_s,
        what="every queue drained",
    )


def run_paced(pipeline: LocalPipeline, scenario: Scenario, steps: range) -> None:
    """Write each step, then wait for everything the scenario should have caused so far.

    The pace of a person at a terminal, as in `make demo`. (Bursts of changes to one product
    are a separate matter: see the known gap in README 'Run it locally'.)
    """
    assert pipeline.mongo is not None
    collection = pipeline.mongo["clase"]["productos"]
    for index in steps:
        scenario.steps[index].write(collection)
        wait_for_reactions(pipeline, scenario, expected(scenario, range(index + 1)))


@contextmanager
def e2e_pipeline(
    name: str, relay_environment: Mapping[str, str] | None = None
) -> Iterator[LocalPipeline]:
    """The whole pipeline for one module, its relay named `name` plus a unique suffix."""
    gaps = missing(survey())
    assert not gaps, f"the end-to-end tests need every part; missing: {gaps}"
    config = PipelineConfig(
        mongodb_uri=os.environ.get("MONGODB_URI") or None,
        relay_id=f"{name}-{uuid.uuid4().hex[:8]}",
        retry_delays_s=(0.0, 1.0),
        relay_environment=dict(relay_environment or {}),
    )
    with running_pipeline(config) as running:
        yield running

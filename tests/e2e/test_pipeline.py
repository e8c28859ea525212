"""The whole pipeline on one machine: relay, bus and rules from template.yaml, the functions.

The scenario of `make demo` must cause exactly its stock alerts, change notifications and audit
records, once each; a relay killed mid-scenario loses nothing; an event the audit writer cannot
store waits in its on-failure queue and can be redriven.
"""

import uuid

from localdev import failpoints
from localdev.pipeline import COLLECTION, DATABASE
from tests.e2e.helpers import (
    expected,
    fresh_scenario,
    observed,
    run_paced,
    wait_for_reactions,
    wait_settled,
)


def _products(pipeline):
    return pipeline.mongo[DATABASE][COLLECTION]


def _run_steps(pipeline, scenario, steps):
    for index in steps:
        scenario.steps[index].write(_products(pipeline))


def test_the_scenario_causes_each_expected_reaction_exactly_once(pipeline):
    # GIVEN the demo's scenario on fresh products
    scenario = fresh_scenario()
    wanted = expected(scenario)

    # WHEN every step is written, one after the other
    run_paced(pipeline, scenario, range(len(scenario.steps)))

    # THEN each alert, notification and audit record arrives within the deadline, and once
    # everything has drained there is exactly one of each and nothing else
    wait_for_reactions(pipeline, scenario, wanted)
    wait_settled(pipeline)
    assert observed(pipeline, scenario) == wanted
    assert sum(wanted["alerts"].values()) == 5
    assert sum(wanted["notifications"].values()) == 8
    assert sum(wanted["audits"].values()) == 16


def test_a_relay_killed_mid_scenario_loses_nothing_and_resent_events_act_once(pipeline):
    # GIVEN the first steps done and a checkpoint saved by the relay
    scenario = fresh_scenario()
    steps = len(scenario.steps)
    dynamodb = pipeline.client("dynamodb")
    table = pipeline.resources.tables["relayId"]
    key = {"relayId": {"S": pipeline.config.relay_id}}
    run_paced(pipeline, scenario, range(3))
    pipeline.wait_for(
        lambda: "Item" in dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True),
        deadline_s=20,
        what="a relay checkpoint",
    )
    saved = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]

    # ... more steps forwarded after that checkpoint
    run_paced(pipeline, scenario, range(3, 6))
    duplicates_before = sum(1 for call in pipeline.dispatcher.invocations if call.duplicate)
    resent_before = pipeline.collector.bus.resent

    # WHEN the relay is killed with SIGKILL, its checkpoint is the earlier one (as when it dies
    # between sending and checkpointing), changes are written while it is down, and it restarts
    pipeline.kill_relay()
    dynamodb.put_item(TableName=table, Item=saved)
    _run_steps(pipeline, scenario, range(6, 8))
    pipeline.start_relay()
    run_paced(pipeline, scenario, range(8, steps))

    # THEN every reaction arrives, exactly once: the re-sent events reached the functions again
    # and their idempotency absorbed them
    wanted = expected(scenario)
    wait_for_reactions(pipeline, scenario, wanted)
    wait_settled(pipeline)
    assert observed(pipeline, scenario) == wanted
    assert pipeline.collector.bus.resent > resent_before
    duplicates = sum(1 for call in pipeline.dispatcher.invocations if call.duplicate)
    assert duplicates > duplicates_before


def test_an_event_the_audit_writer_cannot_store_waits_in_its_on_failure_queue(pipeline):
    # GIVEN a product whose insert was audited
    products = _products(pipeline)
    name = f"Harina {uuid.uuid4().hex[:6]}"
    product_id = products.insert_one({"nombreProducto": name, "cantidad": 50}).inserted_id
    audit_log = pipeline.mongo[DATABASE]["audit_log"]
    pipeline.wait_for(
        lambda: audit_log.count_documents({"documentKey._id": product_id}) == 1,
        deadline_s=30,
        what="the insert audited",
    )

    # WHEN every insert into MongoDB fails (the audit store is down) while the product changes
    # (an update: the test's own write is not an insert)
    with failpoints.fail_point(
        pipeline.mongo,
        "failCommand",
        "alwaysOn",
        {"failCommands": ["insert"], "errorCode": 2},
    ):
        products.update_one({"_id": product_id}, {"$set": {"cantidad": 45, "updatedBy": "e2e"}})

        def parked():
            letters = pipeline.dispatcher.dead_letters("AuditWriterFunction")
            return [
                letter
                for letter in letters
                if letter.event.get("detail", {}).get("documentKey", {}).get("_id", {}).get("$oid")
                == str(product_id)
            ]

        pipeline.wait_for(lambda: bool(parked()), deadline_s=30, what="the event dead-lettered")
        [letter] = parked()

    # THEN the event waits in the audit writer's on-failure queue with the error, after every
    # attempt the template allows; nothing was recorded for it, and the other functions acted
    assert letter.event["detail"]["operationType"] == "update"
    assert letter.attempts == 3
    assert letter.error_code  # the exception type the handler raised
    assert "failCommand" in letter.error_message  # ... whose message carries the cause
    assert audit_log.count_documents({"documentKey._id": product_id}) == 1

    # ... and once the store is back, redriving it records the change exactly once
    assert pipeline.dispatcher.redrive("AuditWriterFunction") >= 1
    pipeline.wait_for(
        lambda: audit_log.count_documents({"documentKey._id": product_id}) == 2,
        deadline_s=30,
        what="the redriven event audited",
    )
    wait_settled(pipeline)
    assert (
        audit_log.count_documents({"documentKey._id": product_id, "operationType": "update"}) == 1
    )

"""Least privilege: no `*` action or resource in any policy, outside a documented allow-list.

The template is first expanded by the SAM translator (in-process, as `sam deploy` would), so
policies SAM generates are checked too, then every statement of every identity policy, managed
policy and resource policy is inspected, in both branches of every `Fn::If`.
"""

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.session import Session
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from localdev.template_model import read_template

# (resource logical id, statement Sid) -> why AWS requires "*" there.
ALLOWED_WILDCARD_RESOURCES: dict[tuple[str, str], str] = {
    ("StockAlertRole", "Tracing"): "X-Ray has no resource-level permissions",
    ("UpdateNotifierRole", "Tracing"): "X-Ray has no resource-level permissions",
    ("AuditWriterRole", "Tracing"): "X-Ray has no resource-level permissions",
    (
        "RelayExecutionRole",
        "EcrLogin",
    ): "ecr:GetAuthorizationToken has no resource-level permissions",
    # A key policy is attached to the key: its Resource is always "*" and means "this key".
    ("EncryptionKey", "AccountAdministersTheKey"): "key policy: Resource * is the key itself",
    ("EncryptionKey", "EventBridgeUsesTheKey"): "key policy: Resource * is the key itself",
    ("EncryptionKey", "CloudWatchAlarmsUseTheKey"): "key policy: Resource * is the key itself",
    ("EncryptionKey", "CloudWatchLogsUsesTheKey"): "key policy: Resource * is the key itself",
}
# (resource logical id, statement Sid) -> why a wildcard action is right there.
ALLOWED_WILDCARD_ACTIONS: dict[tuple[str, str], str] = {
    ("EncryptionKey", "AccountAdministersTheKey"): (
        "kms:* for the account root is how a key policy delegates the key to IAM"
    ),
}
# AWS managed policies a role may carry -> why.
ALLOWED_MANAGED_POLICIES: dict[str, str] = {
    "AWSLambdaVPCAccessExecutionRole": (
        "audit writer in a VPC: ec2 network-interface actions have no resource-level permissions"
    ),
}

POLICY_RESOURCES = {
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::KMS::Key": "KeyPolicy",
    "AWS::Events::EventBus": "Policy",
}


def transformed_template() -> dict[str, Any]:
    """The template after the SAM transform, with code locations as `sam deploy` uploads them."""
    template = copy.deepcopy(read_template())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = "s3://artifacts/code.zip"
    # A region for SAM's pseudo parameters; the managed-policy map is empty because the
    # template names no managed policy by its short name (SAM would look names up in IAM).
    translator = Translator(None, Parser(), boto_session=Session(region_name="us-east-1"))
    return translator.translate(template, parameter_values={}, get_managed_policy_map=dict)


def statements(document: Any) -> Iterator[dict[str, Any]]:
    """Every statement of a policy document, looking into both branches of each Fn::If."""
    if isinstance(document, dict) and set(document) == {"Fn::If"}:
        for branch in document["Fn::If"][1:]:
            yield from statements(branch)
    elif isinstance(document, dict) and "Statement" in document:
        yield from statements(document["Statement"])
    elif isinstance(document, list):
        for item in document:
            yield from statements(item)
    elif isinstance(document, dict) and "Effect" in document:
        yield document


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            for policy in as_list(properties.get("Policies", [])):
                yield logical_id, policy.get("PolicyDocument", policy)
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield logical_id, properties["PolicyDocument"]
        elif kind in POLICY_RESOURCES and POLICY_RESOURCES[kind] in properties:
            yield logical_id, properties[POLICY_RESOURCES[kind]]


def wildcard_violations(template: dict[str, Any]) -> list[str]:
    """Every `*` action or resource, and every managed policy, not in the allow-lists."""
    problems = []
    for logical_id, document in policy_documents(template):
        for statement in statements(document):
            if statement["Effect"] != "Allow":
                continue  # a Deny on "*" only takes permissions away
            key = (logical_id, statement.get("Sid", ""))
            actions = as_list(statement.get("Action", []))
            wildcard = any(a == "*" or str(a).endswith(":*") for a in actions)
            if wildcard and key not in ALLOWED_WILDCARD_ACTIONS:
                problems.append(f"{logical_id} {key[1] or '(no Sid)'}: wildcard action {actions}")
            if (
                "*" in as_list(statement.get("Resource", []))
                and key not in ALLOWED_WILDCARD_RESOURCES
            ):
                problems.append(f"{logical_id} {key[1] or '(no Sid)'}: Resource '*' for {actions}")
            if statement.get("Principal") == "*" or statement.get("Principal") == {"AWS": "*"}:
                problems.append(f"{logical_id} {key[1] or '(no Sid)'}: allows any principal")
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for arn in managed_policy_arns(resource["Properties"].get("ManagedPolicyArns", [])):
            if arn.rsplit("/", 1)[-1] not in ALLOWED_MANAGED_POLICIES:
                problems.append(f"{logical_id}: managed policy {arn}")
    return problems


def managed_policy_arns(value: Any) -> Iterator[str]:
    if isinstance(value, dict) and "Fn::If" in value:
        for branch in value["Fn::If"][1:]:
            yield from managed_policy_arns(branch)
    elif isinstance(value, dict) and "Fn::Sub" in value:
        yield str(value["Fn::Sub"])
    elif isinstance(value, list):
        for item in value:
            yield from managed_policy_arns(item)
    elif isinstance(value, str):
        yield value


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return transformed_template()


def test_no_wildcards_outside_the_allow_list(template):
    assert wildcard_violations(template) == []


def test_the_allow_list_has_no_stale_entries(template):
    # Every allow-listed statement still exists: the list documents the template as it is.
    present = {
        (logical_id, statement.get("Sid", ""))
        for logical_id, document in policy_documents(template)
        for statement in statements(document)
    }
    assert set(ALLOWED_WILDCARD_RESOURCES) <= present
    assert set(ALLOWED_WILDCARD_ACTIONS) <= present


def test_the_check_finds_a_wildcard():
    # GIVEN a role that grants sns:* on everything, and a managed policy nobody allowed
    bad = {
        "Resources": {
            "Bad": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"],
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": [
                                    {
                                        "Fn::If": [
                                            "C",
                                            {"Effect": "Allow", "Action": "sns:*", "Resource": "*"},
                                            {"Ref": "AWS::NoValue"},
                                        ]
                                    }
                                ]
                            }
                        }
                    ],
                },
            }
        }
    }

    # THEN the check reports the action, the resource and the managed policy
    assert len(wildcard_violations(bad)) == 3


def test_every_function_has_its_own_role_from_the_template(template):
    functions = {
        k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Lambda::Function"
    }
    roles = {fn: props["Properties"]["Role"]["Fn::GetAtt"][0] for fn, props in functions.items()}
    assert roles == {
        "StockAlertFunction": "StockAlertRole",
        "UpdateNotifierFunction": "UpdateNotifierRole",
        "AuditWriterFunction": "AuditWriterRole",
    }


def test_functions_publish_only_to_their_own_topic(template):
    def publish_targets(role: str) -> list[Any]:
        return [
            statement["Resource"]
            for _, document in policy_documents({"Resources": {role: template["Resources"][role]}})
            for statement in statements(document)
            if "sns:Publish" in as_list(statement["Action"])
        ]

    assert publish_targets("StockAlertRole") == [{"Ref": "AlertTopic"}]
    assert publish_targets("UpdateNotifierRole") == [{"Ref": "ChangesTopic"}]
    assert publish_targets("AuditWriterRole") == []


def test_key_policy_lets_eventbridge_use_the_key_without_source_conditions(template):
    # The SNS developer guide: aws:SourceArn / aws:SourceAccount conditions in the key policy
    # break EventBridge delivery to encrypted topics. Keep them out of the EventBridge statement.
    key_policy = template["Resources"]["EncryptionKey"]["Properties"]["KeyPolicy"]
    (events,) = [s for s in statements(key_policy) if s.get("Sid") == "EventBridgeUsesTheKey"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(events["Action"])
    assert "Condition" not in events

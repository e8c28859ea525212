"""The template declares what the other parts rely on: names, keys, settings, encryption, alarms.

Everything is read through `localdev.template_model` under explicit parameter values, so these
tests also pin the model's resolution of conditions and intrinsic functions.
"""

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from localdev.template_model import (
    DETAIL_SCHEMA_PATH,
    TemplateError,
    TemplateModel,
    load_template,
    read_template,
    registry_schema,
    resolve_parameters,
)

REPO = Path(__file__).resolve().parents[3]
WITH_RELAY = {
    "RelayImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/relay:abc",
    "SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b",
    "SecurityGroupId": "sg-0123abcd",
}


@pytest.fixture(scope="module")
def default_model() -> TemplateModel:
    return load_template()


@pytest.fixture(scope="module")
def relay_model() -> TemplateModel:
    return load_template(parameters=WITH_RELAY)


def resource(model: TemplateModel, logical_id: str) -> dict[str, Any]:
    return dict(model.resources[logical_id]["Properties"])


# --- the event schema --------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["mongodb.changestream", "inventory.changes"])
def test_registry_schema_is_the_contract_schema(source):
    # The registry cannot read a file: the template carries the schema inline. It must be the
    # contract's schema exactly (wrapped in the envelope), else run
    # `python -m localdev.template_model registry-schema --write`.
    model = load_template(parameters={"EventSource": source})
    inline = json.loads(resource(model, "ChangeEventSchema")["Content"])
    contract = json.loads(DETAIL_SCHEMA_PATH.read_text(encoding="utf-8"))
    assert inline == registry_schema(contract, source)
    assert inline["properties"]["detail"]["properties"] == contract["properties"]


def test_registry_schema_is_draft4_and_names_the_event(default_model):
    schema = resource(default_model, "ChangeEventSchema")
    assert schema["Type"] == "JSONSchemaDraft4"
    assert schema["SchemaName"] == "mongodb.changestream@MongoDBChangeEvent"


# --- functions ---------------------------------------------------------------------------------

COMMON_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
COMMON_ENV |= {"IDEMPOTENCY_TABLE", "IDEMPOTENCY_TTL_HOURS"}
FUNCTION_ENV = {
    "StockAlertFunction": {
        "ALERT_TOPIC_ARN",
        "ALERT_STATE_TABLE",
        "PRODUCTS_COLLECTION",
        "QUANTITY_FIELD",
        "NAME_FIELD",
        "LOW_STOCK_THRESHOLD",
        "THRESHOLD_FIELD",
        "ALERT_LANGUAGE",
        "ALERT_MODE",
        "ALERT_ON_REPLAY",
    },
    "UpdateNotifierFunction": {"CHANGES_TOPIC_ARN", "NOTIFY_ON_REPLACE"},
    "AuditWriterFunction": {
        "AUDIT_STORE",
        "MONGODB_URI_SECRET_ARN",
        "AUDIT_DATABASE",
        "AUDIT_COLLECTION",
        "AUDIT_TABLE",
        "AUDIT_ACTOR_FIELDS",
        "AUDIT_FULL_DOCUMENT",
        "AUDIT_BEFORE_CHANGE",
        "AUDIT_REDACT_FIELDS",
    },
}
FOLDERS = {
    "StockAlertFunction": "functions/stock_alert/",
    "UpdateNotifierFunction": "functions/update_notifier/",
    "AuditWriterFunction": "functions/audit_writer/",
}


@pytest.mark.parametrize("logical_id", sorted(FUNCTION_ENV))
def test_functions_get_exactly_the_agreed_environment(default_model, logical_id):
    function = default_model.function(logical_id)
    assert set(function.environment) == COMMON_ENV | FUNCTION_ENV[logical_id]
    assert function.code_uri == FOLDERS[logical_id]
    assert function.handler == "app.handler"


def test_function_settings_follow_the_defaults(default_model):
    stock = default_model.function("StockAlertFunction").environment
    assert stock["LOW_STOCK_THRESHOLD"] == "10"
    assert stock["PRODUCTS_COLLECTION"] == "productos"
    assert stock["QUANTITY_FIELD"] == "cantidad"
    assert stock["ALERT_MODE"] == "episode"
    assert stock["ALERT_TOPIC_ARN"] == default_model.topic("AlertTopic").arn
    assert stock["ALERT_STATE_TABLE"] == default_model.table("AlertStateTable").name
    assert stock["IDEMPOTENCY_TABLE"] == default_model.table("IdempotencyTable").name
    assert stock["IDEMPOTENCY_TTL_HOURS"] == "48"
    assert stock["POWERTOOLS_METRICS_NAMESPACE"] == "MongoChangeReactions"
    notifier = default_model.function("UpdateNotifierFunction").environment
    assert notifier["CHANGES_TOPIC_ARN"] == default_model.topic("ChangesTopic").arn


def test_functions_run_python313_on_arm64_with_the_shared_layer():
    globals_function = read_template()["Globals"]["Function"]
    assert globals_function["Runtime"] == "python3.13"
    assert globals_function["Architectures"] == ["arm64"]
    assert globals_function["Layers"] == [{"Ref": "SharedLayer"}]
    assert globals_function["Tracing"] == "Active"


@pytest.mark.parametrize("logical_id", sorted(FUNCTION_ENV))
def test_failed_invocations_go_to_the_functions_dead_letter_queue(default_model, logical_id):
    properties = resource(default_model, logical_id)
    config = properties["EventInvokeConfig"]
    queue = logical_id.replace("Function", "DeadLetterQueue")
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": default_model.queue(queue).arn,
    }
    assert config["MaximumEventAgeInSeconds"] <= 21600


def test_audit_store_parameter_switches_table_secret_and_vpc():
    # GIVEN the DynamoDB store: a table, no secret read, no VPC
    dynamo = load_template(parameters={"AuditStore": "dynamodb", **WITH_RELAY})
    env = dynamo.function("AuditWriterFunction").environment
    assert env["AUDIT_TABLE"] == dynamo.table("AuditTable").name
    assert env["MONGODB_URI_SECRET_ARN"] == ""
    assert "VpcConfig" not in resource(dynamo, "AuditWriterFunction")
    assert [k.name for k in dynamo.table("AuditTable").key_schema] == ["documentKey", "sortKey"]

    # GIVEN the MongoDB store with the relay's network: the secret and the relay's subnets
    mongo = load_template(parameters=WITH_RELAY)
    env = mongo.function("AuditWriterFunction").environment
    assert env["AUDIT_TABLE"] == ""
    assert env["MONGODB_URI_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert resource(mongo, "AuditWriterFunction")["VpcConfig"] == {
        "SubnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
        "SecurityGroupIds": ["sg-0123abcd"],
    }
    with pytest.raises(KeyError):
        mongo.table("AuditTable")

    # GIVEN an existing secret: the stack creates none and uses that one
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mongo-uri-AbCdEf"
    given = load_template(parameters={"MongoDbUriSecretArn": arn})
    assert "MongoDbUriSecret" not in given.resources
    assert given.function("AuditWriterFunction").environment["MONGODB_URI_SECRET_ARN"] == arn


# --- rules -------------------------------------------------------------------------------------


def test_one_rule_per_function_each_target_with_retries_and_a_dead_letter_queue(default_model):
    by_function = {rule.function_targets: rule.logical_id for rule in default_model.rules}
    assert by_function[("StockAlertFunction",)] == "StockAlertRule"
    assert by_function[("UpdateNotifierFunction",)] == "UpdateNotifierRule"
    assert by_function[("AuditWriterFunction",)] == "AuditWriterRule"
    for rule in default_model.rules:
        assert rule.event_bus_name == "mongodb-changes"
        for target in rule.targets:
            assert target.retry_policy == {
                "MaximumRetryAttempts": 185,
                "MaximumEventAgeInSeconds": 86400,
            }
            assert target.dead_letter_queue is not None, f"{rule.logical_id}/{target.id}"


def test_rule_dead_letter_queues_accept_only_their_rules(default_model):
    policy = resource(default_model, "RuleDeadLetterQueuePolicy")["PolicyDocument"]
    (allow,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    rule_arns = {
        f"arn:aws:events:us-east-1:123456789012:rule/{r.name}" for r in default_model.rules
    }
    assert set(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_arns
    queues = {
        default_model.queue(t.dead_letter_queue).arn
        for r in default_model.rules
        for t in r.targets
        if t.dead_letter_queue
    }
    assert set(allow["Resource"]) == queues


def test_invoke_permissions_are_scoped_to_each_rule(default_model):
    for logical_id, rule in [
        ("StockAlertInvokePermission", "StockAlertRule"),
        ("UpdateNotifierInvokePermission", "UpdateNotifierRule"),
        ("AuditWriterInvokePermission", "AuditWriterRule"),
    ]:
        permission = resource(default_model, logical_id)
        assert permission["Principal"] == "events.amazonaws.com"
        assert permission["SourceArn"].endswith(f":rule/{default_model.rule(rule).name}")


def test_numbers_stay_numbers_in_patterns():
    # A !Ref to a Number parameter would become the string "7", which EventBridge rejects in a
    # numeric filter: the patterns are built with !Sub so the threshold stays a JSON number.
    model = load_template(parameters={"LowStockThreshold": "7.5"})
    text = json.dumps(model.rule("StockAlertRule").event_pattern)
    assert '["<=", 7.5]' in text


# --- tables, topics, bucket --------------------------------------------------------------------


def test_tables_have_the_agreed_keys_ttl_and_recovery(default_model):
    keys = {
        t.logical_id: [(k.name, k.attribute_type) for k in t.key_schema]
        for t in default_model.tables
    }
    assert keys == {
        "IdempotencyTable": [("id", "S")],
        "AlertStateTable": [("productKey", "S")],
        "CheckpointTable": [("relayId", "S")],
    }
    assert default_model.table("IdempotencyTable").ttl_attribute == "expiration"
    assert all(table.point_in_time_recovery for table in default_model.tables)
    for table in default_model.tables:
        assert resource(default_model, table.logical_id)["SSESpecification"]["SSEType"] == "KMS"


def test_topics_and_queues_are_encrypted_with_the_stack_key(default_model):
    for topic in default_model.topics:
        assert resource(default_model, topic.logical_id)["KmsMasterKeyId"] == "EncryptionKey"
    for queue in default_model.queues:
        assert resource(default_model, queue.logical_id)["KmsMasterKeyId"] == "EncryptionKey"
    bucket = resource(default_model, "OversizePayloadBucket")
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == "30"


def test_subscriptions_come_from_optional_parameters(default_model):
    assert all(topic.subscriptions == () for topic in default_model.topics)
    model = load_template(
        parameters={
            "AlertEmail": "ops@example.com",
            "AlertPhoneNumber": "+34600000000",
            "ChangesEmail": "team@example.com",
            "OpsEmail": "oncall@example.com",
        }
    )
    subscriptions = {
        t.logical_id: {(s.protocol, s.endpoint) for s in t.subscriptions} for t in model.topics
    }
    assert subscriptions == {
        "AlertTopic": {("email", "ops@example.com"), ("sms", "+34600000000")},
        "ChangesTopic": {("email", "team@example.com")},
        "OpsTopic": {("email", "oncall@example.com")},
    }


# --- the relay ---------------------------------------------------------------------------------

RELAY_ENV = {
    "WATCH_DATABASE",
    "WATCH_COLLECTIONS",
    "EVENT_BUS_NAME",
    "EVENT_SOURCE",
    "CHECKPOINT_TABLE",
    "RELAY_ID",
}


def test_relay_resources_are_left_out_without_an_image(default_model):
    relay_types = {"AWS::ECS::Cluster", "AWS::ECS::TaskDefinition", "AWS::ECS::Service"}
    assert not [r for r in default_model.resources.values() if r["Type"] in relay_types]
    # the parts the functions need stay: oversize bucket, checkpoint table, relay DLQ
    assert {"OversizePayloadBucket", "CheckpointTable", "RelayDeadLetterQueue"} <= set(
        default_model.resources
    )


def test_relay_task_definition(relay_model):
    task = resource(relay_model, "RelayTaskDefinition")
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (task["Cpu"], task["Memory"]) == ("256", "512")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    (container,) = task["ContainerDefinitions"]
    assert container["ReadonlyRootFilesystem"] is True
    assert container["StopTimeout"] == 120
    assert container["HealthCheck"]["Command"] == ["CMD", "python", "-m", "relay", "health"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["Secrets"] == [
        {"Name": "MONGODB_URI", "ValueFrom": relay_model.outputs["MongoDbUriSecretArn"]}
    ]
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert set(env) >= RELAY_ENV
    assert "MONGODB_URI" not in env  # only through the secret
    assert env["EVENT_BUS_NAME"] == relay_model.event_bus_name
    assert env["CHECKPOINT_TABLE"] == relay_model.table("CheckpointTable").name
    assert float(env["STOP_DEADLINE_SECONDS"]) < container["StopTimeout"]
    # the health file lives on the writable scratch volume
    (mount,) = container["MountPoints"]
    assert env["HEALTH_FILE"].startswith(mount["ContainerPath"] + "/")


def test_relay_environment_names_are_settings_the_relay_reads(relay_model):
    settings = (REPO / "relay/settings.py").read_text(encoding="utf-8")
    container = resource(relay_model, "RelayTaskDefinition")["ContainerDefinitions"][0]
    # POWERTOOLS_* variables are read by Powertools itself.
    names = [item["Name"] for item in container["Environment"]]
    unknown = [n for n in names if f'"{n}"' not in settings and not n.startswith("POWERTOOLS_")]
    assert unknown == [], "relay/settings.py does not read these"


@pytest.mark.parametrize(
    ("lease", "desired", "minimum", "maximum"), [("false", 1, 0, 100), ("true", 2, 50, 200)]
)
def test_relay_service_runs_one_relay_or_two_with_the_lease(lease, desired, minimum, maximum):
    model = load_template(parameters={**WITH_RELAY, "LeaseEnabled": lease})
    service = resource(model, "RelayService")
    assert service["DesiredCount"] == desired
    deployment = service["DeploymentConfiguration"]
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (minimum, maximum)
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]


def test_bus_policy_denies_other_publishers(default_model, relay_model):
    (cross_account,) = resource(default_model, "ChangeEventBus")["Policy"]["Statement"]
    assert cross_account["Effect"] == "Deny"
    statements = resource(relay_model, "ChangeEventBus")["Policy"]["Statement"]
    only_relay = statements[1]
    assert only_relay["Effect"] == "Deny"
    assert only_relay["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == [
        "arn:aws:iam::123456789012:role/mongo-change-reactions-RelayTaskRole"
    ]


# --- alarms, dashboard, outputs ----------------------------------------------------------------


def test_every_dead_letter_queue_has_an_alarm(relay_model):
    alarmed = {
        props["Properties"]["Dimensions"][0]["Value"]
        for props in relay_model.resources.values()
        if props["Type"] == "AWS::CloudWatch::Alarm"
        and props["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    assert alarmed == {queue.name for queue in relay_model.queues}


def test_alarms_notify_the_operations_topic(relay_model):
    alarms = {
        k: v["Properties"]
        for k, v in relay_model.resources.items()
        if v["Type"] == "AWS::CloudWatch::Alarm"
    }
    ops = relay_model.topic("OpsTopic").arn
    assert all(alarm["AlarmActions"] == [ops] for alarm in alarms.values())
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert {
        ("MongoChangeReactions", "LagSeconds"),
        ("MongoChangeReactions", "CheckpointAgeSeconds"),
        ("ECS/ContainerInsights", "RunningTaskCount"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
    } <= metrics


def test_dashboard_body_is_valid_json(relay_model):
    body = json.loads(resource(relay_model, "Dashboard")["DashboardBody"])
    titles = [widget["properties"]["title"] for widget in body["widgets"]]
    assert any("lag" in title for title in titles)


def test_outputs_a_user_needs(default_model):
    assert {
        "EventBusName",
        "EventBusArn",
        "AlertTopicArn",
        "ChangesTopicArn",
        "OpsTopicArn",
        "IdempotencyTableName",
        "CheckpointTableName",
        "DashboardUrl",
    } <= set(default_model.outputs)


# --- samconfig.toml and events/env.json --------------------------------------------------------


def test_samconfig_environments_deploy_with_valid_parameters():
    config = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))
    template = read_template()
    for environment in ("default", "prod"):
        assert config[environment]["global"]["parameters"]["stack_name"]
        deploy = config[environment]["deploy"]["parameters"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        overrides = dict(
            item.split("=", 1) for item in deploy["parameter_overrides"].replace('"', "").split()
        )
        resolve_parameters(template, overrides)  # raises when a name or value is wrong
        assert (REPO / config[environment]["local_invoke"]["parameters"]["env_vars"]).is_file()


def test_env_file_sets_only_variables_the_template_declares(default_model):
    env_file = json.loads((REPO / "events/env.json").read_text(encoding="utf-8"))
    declared = {f.logical_id: set(f.environment) for f in default_model.functions}
    for key, variables in env_file.items():
        names = set().union(*declared.values()) if key == "Parameters" else declared[key]
        assert set(variables) <= names, key


# --- the model itself --------------------------------------------------------------------------


def test_parameters_are_checked_by_name_and_value():
    with pytest.raises(TemplateError, match="AlertMode='sometimes'"):
        load_template(parameters={"AlertMode": "sometimes"})
    with pytest.raises(TemplateError, match="unknown parameter"):
        load_template(parameters={"Threshold": "3"})
    with pytest.raises(TemplateError, match="QuantityField"):
        load_template(parameters={"QuantityField": "stock.cantidad"})


def test_every_parameter_is_grouped_for_sam_deploy_guided_and_the_console():
    template = read_template()
    interface = template["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [name for group in interface["ParameterGroups"] for name in group["Parameters"]]
    assert sorted(grouped) == sorted(template["Parameters"])
    assert all(spec.get("Description") for spec in template["Parameters"].values())


def test_every_checkov_skip_says_why():
    skips = [
        (logical_id, skip)
        for logical_id, spec in read_template()["Resources"].items()
        for skip in spec.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "the template documents its checkov skips in resource metadata"
    for logical_id, skip in skips:
        assert skip["id"].startswith("CKV"), logical_id
        assert len(skip.get("comment", "")) > 20, f"{logical_id} {skip['id']}: give the reason"

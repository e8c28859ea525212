"""`localdev.template_model` resolves intrinsic functions as CloudFormation does (those used)."""

import textwrap
from pathlib import Path

import pytest

from localdev.template_model import TemplateError, load_template

SMALL = """
Parameters:
  Name: {Type: String, Default: bus}
  Limit: {Type: Number, Default: 5}
  Extra: {Type: String, Default: ""}
  Items: {Type: CommaDelimitedList, Default: "a,b"}
Conditions:
  HasExtra: !Not [!Equals [!Ref Extra, ""]]
  Both: !And [!Condition HasExtra, !Equals [!Ref Limit, 5]]
Resources:
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Sub "${Name}-${AWS::Region}"}
  Queue:
    Type: AWS::SQS::Queue
  Optional:
    Type: AWS::SQS::Queue
    Condition: HasExtra
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
      EventPattern: !Sub
        - '{"detail": {"n": [{"numeric": ["<=", ${Limit}]}], "k": ["${Key}"], "lit": ["${!x}"]}}'
        - Key: !If [HasExtra, !Ref Extra, none]
      Targets:
        - Id: q
          Arn: !GetAtt Queue.Arn
          DeadLetterConfig: {Arn: !GetAtt Queue.Arn}
        - !If [HasExtra, {Id: o, Arn: !GetAtt Optional.Arn}, !Ref AWS::NoValue]
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Join ["-", [t, !Select [1, !Ref Items]]]
      AttributeDefinitions: [{AttributeName: k, AttributeType: S}]
      KeySchema: [{AttributeName: k, KeyType: HASH}]
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: false}
      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(SMALL), encoding="utf-8")
    return path


def test_defaults_resolve(small):
    model = load_template(small)
    assert model.event_bus_name == "bus-us-east-1"
    assert model.conditions == {"HasExtra": False, "Both": False}
    assert "Optional" not in model.resources
    rule = model.rule("Rule")
    assert rule.event_bus_name == "bus-us-east-1"
    assert rule.event_pattern == {
        "detail": {"n": [{"numeric": ["<=", 5]}], "k": ["none"], "lit": ["${x}"]}
    }
    assert [t.logical_id for t in rule.targets] == ["Queue"]
    assert rule.targets[0].dead_letter_queue == "Queue"
    table = model.table("Table")
    assert (table.name, table.partition_key, table.ttl_attribute) == ("t-b", "k", None)
    assert table.point_in_time_recovery


def test_parameters_switch_conditions_and_values(small):
    model = load_template(small, {"Extra": "x", "Limit": "7"})
    assert model.conditions == {"HasExtra": True, "Both": False}
    rule = model.rule("Rule")
    assert rule.event_pattern["detail"]["n"] == [{"numeric": ["<=", 7]}]
    assert rule.event_pattern["detail"]["k"] == ["x"]
    assert [t.logical_id for t in rule.targets] == ["Queue", "Optional"]
    assert model.queue("Optional").url.endswith("/123456789012/mongo-change-reactions-Optional")


def test_errors_name_what_is_wrong(small, tmp_path):
    with pytest.raises(TemplateError, match="unknown parameter"):
        load_template(small, {"Nope": "1"})
    with pytest.raises(KeyError, match="no rule 'Missing'"):
        load_template(small).rule("Missing")
    broken = tmp_path / "broken.yaml"
    broken.write_text("Parameters: {}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="no Resources"):
        load_template(broken)

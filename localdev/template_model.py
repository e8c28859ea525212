"""Read `template.yaml` as CloudFormation would, far enough to rebuild its routing locally.

Loads the template with its intrinsic-function tags, resolves parameters, conditions, `!Ref`,
`!Sub`, `!GetAtt`, `!If`, `!Join`, `!Split` and `!Select` with deterministic physical names, and
exposes the parts a local stand-in needs: the bus, the rules with their event patterns and
targets, the tables, topics, queues and functions. The tests and `make demo` use it so that what
runs locally is what deploys; it never talks to AWS.

    model = load_template("template.yaml", {"LowStockThreshold": "5"})
    model.rule("StockAlertRule").event_pattern
    model.function_rules("AuditWriterFunction")

`python -m localdev.template_model registry-schema --write` regenerates the registry schema in
the template from the contract's JSON Schema; `python -m localdev.template_model rules` prints
the resolved patterns.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO / "template.yaml"
DETAIL_SCHEMA_PATH = REPO / "layers/shared/change_contract/schema/detail.schema.json"

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DEFAULT_STACK = "mongo-change-reactions"

_T = TypeVar("_T")
_NO_VALUE = object()  # what `!Ref AWS::NoValue` resolves to; dropped from lists and mappings
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class TemplateError(ValueError):
    """The template (or a parameter given for it) is not what this model understands."""


# --- loading -------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation's short tags into their long JSON forms."""


def _long_form(name: str) -> Callable[[_CfnLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: _CfnLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(cast(yaml.MappingNode, node), deep=True)
        if name == "Ref":
            return {"Ref": value}
        if name == "Fn::GetAtt" and isinstance(value, str):
            logical_id, _, attribute = value.partition(".")
            return {name: [logical_id, attribute]}
        return {name: value}

    return construct


for _tag in ("Ref", "Condition"):
    _CfnLoader.add_constructor(f"!{_tag}", _long_form(_tag))
for _tag in (
    "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Join", "Split", "Select",
    "FindInMap", "Base64", "GetAZs", "ImportValue", "Cidr", "Length", "ToJsonString",
):  # fmt: skip
    _CfnLoader.add_constructor(f"!{_tag}", _long_form(f"Fn::{_tag}"))


def read_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long (JSON) form."""
    # Parsing 2,000 lines of YAML is the slow part: parse each version of the file once.
    stat = Path(path).stat()
    return copy.deepcopy(_parse_template(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parse_template(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # a SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return cast(dict[str, Any], document)


# --- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleTarget:
    """One target of a rule; `logical_id` names the template resource it delivers to."""

    id: str
    logical_id: str
    resource_type: str
    arn: str
    dead_letter_queue: str | None  # logical id of the target's SQS dead-letter queue
    retry_policy: Mapping[str, Any]


@dataclass(frozen=True)
class EventRule:
    logical_id: str
    name: str
    event_bus_name: str
    event_pattern: Mapping[str, Any]
    targets: tuple[RuleTarget, ...]

    @property
    def function_targets(self) -> tuple[str, ...]:
        """Logical ids of the Lambda functions this rule invokes."""
        return tuple(
            target.logical_id
            for target in self.targets
            if target.resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function")
        )


@dataclass(frozen=True)
class KeyAttribute:
    name: str
    attribute_type: str  # S, N or B
    key_type: str  # HASH or RANGE


@dataclass(frozen=True)
class Table:
    logical_id: str
    name: str
    key_schema: tuple[KeyAttribute, ...]
    ttl_attribute: str | None
    point_in_time_recovery: bool

    @property
    def partition_key(self) -> str:
        return next(key.name for key in self.key_schema if key.key_type == "HASH")


@dataclass(frozen=True)
class Subscription:
    protocol: str
    endpoint: str


@dataclass(frozen=True)
class Topic:
    logical_id: str
    name: str
    arn: str
    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True)
class Queue:
    logical_id: str
    name: str
    url: str
    arn: str


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    code_uri: str
    handler: str
    environment: Mapping[str, str]
    reserved_concurrency: int | None


@dataclass(frozen=True)
class TemplateModel:
    """The resolved template: what exists under these parameters, with physical names."""

    parameters: Mapping[str, str]
    conditions: Mapping[str, bool]
    resources: Mapping[str, Mapping[str, Any]]  # logical id -> resolved resource (Type, Properties)
    event_bus_name: str
    event_source: str
    rules: tuple[EventRule, ...]
    tables: tuple[Table, ...]
    topics: tuple[Topic, ...]
    queues: tuple[Queue, ...]
    functions: tuple[Function, ...]
    account: str = DEFAULT_ACCOUNT
    region: str = DEFAULT_REGION
    stack_name: str = DEFAULT_STACK
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def rule(self, logical_id: str) -> EventRule:
        return _find(self.rules, logical_id, "rule")

    def table(self, logical_id: str) -> Table:
        return _find(self.tables, logical_id, "table")

    def topic(self, logical_id: str) -> Topic:
        return _find(self.topics, logical_id, "topic")

    def queue(self, logical_id: str) -> Queue:
        return _find(self.queues, logical_id, "queue")

    def function(self, logical_id: str) -> Function:
        return _find(self.functions, logical_id, "function")

    def function_rules(self, function_logical_id: str) -> tuple[EventRule, ...]:
        """The rules that invoke a function."""
        return tuple(rule for rule in self.rules if function_logical_id in rule.function_targets)


def _find(items: tuple[_T, ...], logical_id: str, kind: str) -> _T:
    for item in items:
        if getattr(item, "logical_id", None) == logical_id:
            return item
    raise KeyError(f"no {kind} {logical_id!r} in the template under these parameters")


# --- resolution ----------------------------------------------------------------------------------


class _Resolver:
    """Evaluates intrinsic functions against parameters and deterministic physical names."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        *,
        account: str,
        region: str,
        stack_name: str,
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.account = account
        self.region = region
        self.stack_name = stack_name
        self.resources: Mapping[str, Any] = template.get("Resources", {})
        self._conditions: dict[str, bool] = {}

    # conditions

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions = self.template.get("Conditions", {})
            if name not in definitions:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(definitions[name]))
        return self._conditions[name]

    def all_conditions(self) -> dict[str, bool]:
        return {name: self.condition(name) for name in self.template.get("Conditions", {})}

    def exists(self, logical_id: str) -> bool:
        resource = self.resources.get(logical_id)
        if resource is None:
            return False
        condition = resource.get("Condition")
        return condition is None or self.condition(condition)

    # names

    def physical_name(self, logical_id: str) -> str:
        """The name a resource gets: its own name property, else stack name + logical id."""
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"reference to unknown resource {logical_id!r}")
        properties = resource.get("Properties", {}) or {}
        for key in ("Name", "TableName", "TopicName", "QueueName", "FunctionName", "LogGroupName",
                    "RegistryName", "BucketName", "DashboardName", "LayerName"):  # fmt: skip
            if key in properties:
                return str(self.resolve(properties[key]))
        name = f"{self.stack_name}-{logical_id}"
        return name.lower() if resource["Type"] == "AWS::S3::Bucket" else name

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/"
            f"{self.stack_name}/00000000-0000-0000-0000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            declared = self.template.get("Parameters", {}).get(name, {})
            value = self.parameters[name]
            if str(declared.get("Type", "")).startswith(("CommaDelimitedList", "List<")):
                return [item.strip() for item in value.split(",")] if value else []
            return value
        resource = self.resources.get(name)
        if resource is None:
            raise TemplateError(f"!Ref to unknown parameter or resource {name!r}")
        kind = resource["Type"]
        if kind == "AWS::SNS::Topic":
            return self.arn(name)
        if kind == "AWS::SQS::Queue":
            return (
                f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.physical_name(name)}"
            )
        if kind in ("AWS::KMS::Key", "AWS::SecretsManager::Secret", "AWS::Events::Archive"):
            return self.arn(name) if kind == "AWS::SecretsManager::Secret" else name
        return self.physical_name(name)

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        where = f"{self.region}:{self.account}"
        by_type = {
            "AWS::Events::EventBus": f"arn:aws:events:{where}:event-bus/{name}",
            "AWS::Events::Rule": f"arn:aws:events:{where}:rule/{name}",
            "AWS::Events::ApiDestination": f"arn:aws:events:{where}:api-destination/{name}",
            "AWS::Events::Connection": f"arn:aws:events:{where}:connection/{name}",
            "AWS::Events::Archive": f"arn:aws:events:{where}:archive/{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{where}:{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{where}:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{where}:table/{name}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{where}:function:{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{where}:function:{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{where}:key/{logical_id}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{where}:secret:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{self.account}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{where}:log-group:{name}",
        }
        return by_type.get(kind, f"arn:aws:unknown:{where}:{logical_id}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.resources:
            raise TemplateError(f"!GetAtt of unknown resource {logical_id!r}")
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute in ("QueueName", "Name", "RegistryName"):
            return self.physical_name(logical_id)
        return f"{logical_id}.{attribute}"

    # the evaluator

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            handler = _FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, value)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _NO_VALUE}

    def sub(self, value: Any) -> str:
        if isinstance(value, list):
            text, variables = value[0], self.resolve(value[1])
        else:
            text, variables = value, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        # `${!Literal}` is CloudFormation's escape for a literal `${Literal}`.
        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")


def _fn_if(resolver: _Resolver, value: list[Any]) -> Any:
    name, when_true, when_false = value
    return resolver.resolve(when_true if resolver.condition(name) else when_false)


def _fn_select(resolver: _Resolver, value: list[Any]) -> Any:
    index, items = resolver.resolve(value[0]), resolver.resolve(value[1])
    return items[int(index)]


def _fn_split(resolver: _Resolver, value: list[Any]) -> list[str]:
    delimiter, text = value[0], resolver.resolve(value[1])
    return str(text).split(delimiter)


def _fn_join(resolver: _Resolver, value: list[Any]) -> str:
    delimiter, items = value[0], resolver.resolve(value[1])
    return str(delimiter).join(str(item) for item in items)


_FUNCTIONS: dict[str, Callable[[_Resolver, Any], Any]] = {
    "Ref": lambda resolver, name: resolver.ref(name),
    "Condition": lambda resolver, name: resolver.condition(name),
    "Fn::If": _fn_if,
    "Fn::Equals": lambda r, v: str(r.resolve(v[0])) == str(r.resolve(v[1])),
    "Fn::Not": lambda r, v: not r.resolve(v[0]),
    "Fn::And": lambda r, v: all(r.resolve(item) for item in v),
    "Fn::Or": lambda r, v: any(r.resolve(item) for item in v),
    "Fn::Sub": lambda r, v: r.sub(v),
    "Fn::GetAtt": lambda r, v: r.get_att(v[0], v[1]),
    "Fn::Join": _fn_join,
    "Fn::Split": _fn_split,
    "Fn::Select": _fn_select,
}


# --- building the model --------------------------------------------------------------------------


def resolve_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, str | int | float] | None = None
) -> dict[str, str]:
    """Parameter values as CloudFormation would see them: defaults, then overrides, checked."""
    declared: Mapping[str, Any] = template.get("Parameters", {})
    unknown = sorted(set(overrides or {}) - set(declared))
    if unknown:
        raise TemplateError(f"unknown parameter(s): {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        given = (overrides or {}).get(name, spec.get("Default"))
        if given is None:
            raise TemplateError(f"parameter {name} has no default and no value was given")
        value = str(given)
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(item) for item in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, value) is None:
            raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
        values[name] = value
    return values


def load_template(
    path: Path | str = TEMPLATE_PATH,
    parameters: Mapping[str, str | int | float] | None = None,
    *,
    account: str = DEFAULT_ACCOUNT,
    region: str = DEFAULT_REGION,
    stack_name: str = DEFAULT_STACK,
) -> TemplateModel:
    """Resolve the template under the given parameter values (defaults for the rest)."""
    template = read_template(path)
    values = resolve_parameters(template, parameters)
    resolver = _Resolver(template, values, account=account, region=region, stack_name=stack_name)
    globals_function = template.get("Globals", {}).get("Function", {})

    resolved: dict[str, dict[str, Any]] = {}
    for logical_id, resource in template["Resources"].items():
        if not resolver.exists(logical_id):
            continue
        properties = dict(resource.get("Properties", {}) or {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties = _with_globals(globals_function, properties)
        resolved[logical_id] = {
            "Type": resource["Type"],
            "Properties": resolver.resolve(properties),
        }

    arn_owner = {resolver.arn(logical_id): logical_id for logical_id in resolved}
    return TemplateModel(
        parameters=values,
        conditions=resolver.all_conditions(),
        resources=resolved,
        event_bus_name=_only_bus_name(resolved),
        event_source=values.get("EventSource", ""),
        rules=tuple(_rules(resolved, arn_owner, resolver)),
        tables=tuple(_tables(resolved, resolver)),
        topics=tuple(_topics(resolved, resolver)),
        queues=tuple(
            Queue(
                logical_id,
                resolver.physical_name(logical_id),
                str(resolver.ref(logical_id)),
                resolver.arn(logical_id),
            )
            for logical_id, resource in resolved.items()
            if resource["Type"] == "AWS::SQS::Queue"
        ),
        functions=tuple(_functions(resolved, resolver)),
        account=account,
        region=region,
        stack_name=stack_name,
        outputs={
            name: resolver.resolve(output.get("Value"))
            for name, output in template.get("Outputs", {}).items()
            if output.get("Condition") is None or resolver.condition(output["Condition"])
        },
    )


def _with_globals(
    globals_function: Mapping[str, Any], properties: dict[str, Any]
) -> dict[str, Any]:
    merged = {**globals_function, **properties}
    global_env = globals_function.get("Environment", {}).get("Variables", {})
    own_env = properties.get("Environment", {}).get("Variables", {})
    merged["Environment"] = {"Variables": {**global_env, **own_env}}
    return merged


def _only_bus_name(resources: Mapping[str, Mapping[str, Any]]) -> str:
    buses = [r for r in resources.values() if r["Type"] == "AWS::Events::EventBus"]
    if len(buses) != 1:
        raise TemplateError(f"expected one event bus, found {len(buses)}")
    return str(buses[0]["Properties"]["Name"])


def _rules(
    resources: Mapping[str, Mapping[str, Any]], arn_owner: Mapping[str, str], resolver: _Resolver
) -> list[EventRule]:
    rules = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        properties = resource["Properties"]
        pattern = properties.get("EventPattern")
        if isinstance(pattern, str):
            try:
                pattern = json.loads(pattern)
            except json.JSONDecodeError as error:
                raise TemplateError(f"{logical_id}: EventPattern is not JSON: {error}") from error
        targets = []
        for target in properties.get("Targets", []):
            owner = arn_owner.get(target["Arn"])
            if owner is None:
                raise TemplateError(f"{logical_id}: target {target['Id']} is not in the template")
            dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
            targets.append(
                RuleTarget(
                    id=target["Id"],
                    logical_id=owner,
                    resource_type=resources[owner]["Type"],
                    arn=target["Arn"],
                    dead_letter_queue=arn_owner.get(dead_letter) if dead_letter else None,
                    retry_policy=target.get("RetryPolicy", {}),
                )
            )
        rules.append(
            EventRule(
                logical_id=logical_id,
                name=resolver.physical_name(logical_id),
                event_bus_name=str(properties.get("EventBusName", "default")),
                event_pattern=pattern,
                targets=tuple(targets),
            )
        )
    return rules


def _tables(resources: Mapping[str, Mapping[str, Any]], resolver: _Resolver) -> list[Table]:
    tables = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        properties = resource["Properties"]
        types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}
        ttl = properties.get("TimeToLiveSpecification", {})
        pitr = properties.get("PointInTimeRecoverySpecification", {})
        tables.append(
            Table(
                logical_id=logical_id,
                name=resolver.physical_name(logical_id),
                key_schema=tuple(
                    KeyAttribute(k["AttributeName"], types[k["AttributeName"]], k["KeyType"])
                    for k in properties["KeySchema"]
                ),
                ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None,
                point_in_time_recovery=bool(pitr.get("PointInTimeRecoveryEnabled")),
            )
        )
    return tables


def _topics(resources: Mapping[str, Mapping[str, Any]], resolver: _Resolver) -> list[Topic]:
    subscriptions: dict[str, list[Subscription]] = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::SNS::Subscription":
            properties = resource["Properties"]
            subscriptions.setdefault(properties["TopicArn"], []).append(
                Subscription(properties["Protocol"], properties["Endpoint"])
            )
    return [
        Topic(
            logical_id=logical_id,
            name=resolver.physical_name(logical_id),
            arn=resolver.arn(logical_id),
            subscriptions=tuple(subscriptions.get(resolver.arn(logical_id), [])),
        )
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::SNS::Topic"
    ]


def _functions(resources: Mapping[str, Mapping[str, Any]], resolver: _Resolver) -> list[Function]:
    functions = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        concurrency = properties.get("ReservedConcurrentExecutions")
        functions.append(
            Function(
                logical_id=logical_id,
                name=resolver.physical_name(logical_id),
                code_uri=str(properties.get("CodeUri", "")),
                handler=str(properties.get("Handler", "")),
                environment={
                    key: str(value) for key, value in properties["Environment"]["Variables"].items()
                },
                reserved_concurrency=int(concurrency) if concurrency is not None else None,
            )
        )
    return functions


# --- the registry schema -------------------------------------------------------------------------

REGISTRY_DESCRIPTION = (
    "An EventBridge event with detail-type 'MongoDB Change Event'; its detail is the change-event"
    " contract, schema version 1."
)
_SCHEMA_MARK = "      Content: !Sub |\n"


def registry_schema(detail_schema: Mapping[str, Any], event_source: str) -> dict[str, Any]:
    """The contract's detail schema wrapped in the EventBridge envelope, as JSON Schema draft 4.

    The registry takes draft 4 (or OpenAPI 3) only: `$schema` becomes draft 4 and the detail
    moves under `properties.detail`; `$defs` stays at the root so the detail's `#/$defs/...`
    references still resolve. Draft-2020-12 keywords (const, if/then) are kept for readers and
    ignored by draft-4 tools.
    """
    detail = {k: v for k, v in detail_schema.items() if k not in ("$schema", "$id", "$defs")}
    string = {"type": "string"}
    schema: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "MongoDBChangeEvent",
        "description": REGISTRY_DESCRIPTION,
        "type": "object",
        "x-amazon-events-source": [event_source],
        "x-amazon-events-detail-type": ["MongoDB Change Event"],
        "required": ["detail-type", "source", "detail"],
        "properties": {
            "version": string,
            "id": string,
            "detail-type": string,
            "source": string,
            "account": string,
            "time": {"type": "string", "format": "date-time"},
            "region": string,
            "resources": {"type": "array", "items": string},
            "detail": detail,
        },
    }
    if "$defs" in detail_schema:
        schema["$defs"] = detail_schema["$defs"]
    return schema


def _compact_json(value: Any, indent: int = 0, width: int = 92, used: int = 0) -> str:
    """JSON with small objects kept on one line, so the template stays readable.

    `used` is how much of the first line a key already takes.
    """
    one_line = json.dumps(value, ensure_ascii=False)
    fits = indent + used + len(one_line) <= width
    if fits or not isinstance(value, dict | list) or not value:
        return one_line
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            prefix = f"{json.dumps(key)}: "
            items.append(f"{pad}{prefix}{_compact_json(item, indent + 2, width, len(prefix))}")
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    lines = [f"{pad}{_compact_json(item, indent + 2, width)}" for item in value]
    return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"


def render_registry_content(detail_schema: Mapping[str, Any]) -> str:
    """The `Content: !Sub |` block body for the template (source left as ${EventSource})."""
    text = _compact_json(registry_schema(detail_schema, "${EventSource}"))
    return "".join(f"        {line}\n" for line in text.splitlines())


def write_registry_content(template_path: Path, detail_schema: Mapping[str, Any]) -> bool:
    """Rewrite the schema block in the template; True when it changed."""
    text = template_path.read_text(encoding="utf-8")
    start = text.find(_SCHEMA_MARK)
    if start < 0:
        raise TemplateError(f"{template_path}: no '{_SCHEMA_MARK.strip()}' block to rewrite")
    body_start = start + len(_SCHEMA_MARK)
    # The block runs to the last line indented like its body (blank lines inside it included).
    body_end = position = body_start
    for line in text[body_start:].splitlines(keepends=True):
        if line.strip() and not line.startswith("        "):
            break
        position += len(line)
        if line.strip():
            body_end = position
    new = text[:body_start] + render_registry_content(detail_schema) + text[body_end:]
    if new == text:
        return False
    template_path.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.template_model")
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("registry-schema", help="print or rewrite the registry schema")
    schema.add_argument("--write", action="store_true", help="rewrite it in template.yaml")
    rules = commands.add_parser("rules", help="print the resolved rule patterns")
    rules.add_argument("overrides", nargs="*", metavar="Name=Value", help="parameter values")
    args = parser.parse_args(argv)

    if args.command == "registry-schema":
        detail_schema = json.loads(DETAIL_SCHEMA_PATH.read_text(encoding="utf-8"))
        if not args.write:
            print(render_registry_content(detail_schema), end="")
            return 0
        changed = write_registry_content(TEMPLATE_PATH, detail_schema)
        print("template.yaml: registry schema " + ("rewritten" if changed else "already current"))
        return 0

    overrides = dict(item.split("=", 1) for item in args.overrides)
    model = load_template(TEMPLATE_PATH, overrides)
    for rule in model.rules:
        targets = ", ".join(target.logical_id for target in rule.targets)
        print(f"{rule.logical_id} -> {targets}")
        print(json.dumps(rule.event_pattern, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The functions benchmark: each Lambda handler beside a bare handler with the same effect.

Each handler runs in a fresh process (`bench.function_runner`) against moto_server and
SecantusDB (or MONGODB_URI): cold initialisation (import and client set-up), first call, warm
duration per event and peak RSS. A function whose folder is not in the checkout yet is shown as
not measured.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from bench.figures import FunctionRun
from localdev.servers import running_moto, running_secantus

ROOT = Path(__file__).resolve().parent.parent
BARE = Path(__file__).resolve().parent / "bare_handlers"
IDEMPOTENCY_TABLE = "bench-idempotency"
ALERT_STATE_TABLE = "bench-alert-state"
AUDIT_TABLE = "bench-audit"


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    app: Path
    event: str
    baseline_of: str | None = None


SPECS = (
    HandlerSpec("stock_alert", ROOT / "functions/stock_alert/app.py", "update-low-stock"),
    HandlerSpec(
        "update_notifier", ROOT / "functions/update_notifier/app.py", "update-price-change"
    ),
    HandlerSpec("audit_writer", ROOT / "functions/audit_writer/app.py", "update-low-stock"),
    HandlerSpec(
        "bare boto3 SNS publish",
        BARE / "sns_publish.py",
        "update-low-stock",
        baseline_of="stock_alert, update_notifier",
    ),
    HandlerSpec(
        "bare pymongo insert",
        BARE / "mongo_insert.py",
        "update-low-stock",
        baseline_of="audit_writer",
    ),
)


@dataclass
class FunctionBenchConfig:
    invocations: int = 300
    deadline_s: float = 300.0
    only: tuple[str, ...] = ()  # names from SPECS; empty = all


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _make_resources(endpoint: str) -> dict[str, str]:
    """The topics and tables the functions need, in moto_server; returns their names/ARNs."""
    sns, dynamodb = _client("sns", endpoint), _client("dynamodb", endpoint)
    alerts = sns.create_topic(Name="bench-stock-alerts")["TopicArn"]
    changes = sns.create_topic(Name="bench-changes")["TopicArn"]
    tables = {
        IDEMPOTENCY_TABLE: [("id", "HASH")],
        ALERT_STATE_TABLE: [("productKey", "HASH")],
        AUDIT_TABLE: [("documentKey", "HASH"), ("sortKey", "RANGE")],
    }
    for name, keys in tables.items():
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
            BillingMode="PAY_PER_REQUEST",
        )
    return {"alerts": alerts, "changes": changes}


def handler_env(
    spec: HandlerSpec, endpoint: str, mongo_uri: str, arns: dict[str, str]
) -> dict[str, str]:
    """The environment of one handler: the project's documented variables, pointed at loopback."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        POWERTOOLS_SERVICE_NAME=spec.name.replace(" ", "-"),
        POWERTOOLS_METRICS_NAMESPACE="MongoChangeReactions",
        # No X-Ray daemon here; Lambda has one. Tracing stays off so no call waits on it.
        POWERTOOLS_TRACE_DISABLED="true",
        IDEMPOTENCY_TABLE=IDEMPOTENCY_TABLE,
        ALERT_TOPIC_ARN=arns["alerts"],
        ALERT_STATE_TABLE=ALERT_STATE_TABLE,
        CHANGES_TOPIC_ARN=arns["changes"],
        AUDIT_STORE="mongodb",
        MONGODB_URI=mongo_uri,
        AUDIT_DATABASE=f"bench_audit_{uuid.uuid4().hex[:8]}",
        AUDIT_TABLE=AUDIT_TABLE,
        BARE_TOPIC_ARN=arns["alerts"],
    )
    return env


def measure_handler(
    spec: HandlerSpec, env: dict[str, str], config: FunctionBenchConfig, workdir: Path
) -> FunctionRun:
    run = FunctionRun(spec.name, baseline_of=spec.baseline_of)
    if not spec.app.exists():
        run.note = f"{spec.app.relative_to(ROOT)} is not in this checkout yet"
        return run
    result_file = workdir / f"{spec.app.parent.name}-{uuid.uuid4().hex[:6]}.json"
    args = [sys.executable, "-m", "bench.function_runner", "--app", str(spec.app)]
    args += ["--event", str(ROOT / "events" / f"{spec.event}.json")]
    args += ["--invocations", str(config.invocations), "--result-file", str(result_file)]
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=config.deadline_s, check=False
    )
    if done.returncode != 0 or not result_file.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        run.note = f"failed (exit {done.returncode}): {last[:200]}"
        return run
    result = json.loads(result_file.read_text())
    run.measured = True
    run.cold_init_ms = result["init_ms"]
    run.first_call_ms = result["first_call_ms"]
    run.warm_ms_per_event = result["warm_ms_per_event"]
    run.peak_rss_mib = result["peak_rss_mib"]
    run.invocations = result["invocations"]
    run.note = f"event: {spec.event}"
    return run


@contextlib.contextmanager
def _mongo_uri() -> Iterator[str]:
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    with running_secantus(test_commands=False) as server:
        yield server.uri


def run_function_bench(
    config: FunctionBenchConfig, *, log: Callable[[str], None] = print
) -> list[FunctionRun]:
    """Measure every handler in SPECS, each in a fresh process, one after the other."""
    with (
        _mongo_uri() as mongo_uri,
        running_moto() as moto,
        tempfile.TemporaryDirectory(prefix="bench-fn-") as workdir,
    ):
        arns = _make_resources(moto.endpoint)
        runs = []
        for spec in SPECS:
            if config.only and spec.name not in config.only:
                continue
            log(f"function {spec.name}")
            env = handler_env(spec, moto.endpoint, mongo_uri, arns)
            runs.append(measure_handler(spec, env, config, Path(workdir)))
        return runs

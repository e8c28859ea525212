"""`python -m relay run|check|status|health|backfill|replay`: the relay's command line.

`run` streams until SIGTERM/SIGINT; `check` validates the configuration and every dependency and
says what it would watch; `status` prints the checkpoint, its age and the lag; `health` is the
container health check. Output is JSON on stdout; problems go to stderr with a non-zero exit.
"""

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pymongo.errors import PyMongoError

from relay.checkpoint import CheckpointError
from relay.lease import Lease, LeaseError
from relay.service import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_OK,
    Relay,
    aws_client,
    build_checkpoint_store,
)
from relay.settings import RelaySettings, SettingsError
from relay.stream import describe_watch, make_client
from relay.telemetry import check_health, logger


def _settings(env: Mapping[str, str]) -> RelaySettings | None:
    try:
        return RelaySettings.from_env(env)
    except SettingsError as error:
        print(f"relay: configuration error: {error}", file=sys.stderr)
        logger.error("configuration error", variable=error.variable, problem=error.problem)
        return None


def command_run(env: Mapping[str, str]) -> int:
    settings = _settings(env)
    if settings is None:
        return EXIT_CONFIG
    relay = Relay(settings)

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal received", signal=signal.Signals(signum).name)
        relay.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return relay.run()


def _probe(name: str, results: dict[str, Any], action: Callable[[], Any]) -> bool:
    try:
        detail = action()
    except (PyMongoError, ClientError, BotoCoreError, CheckpointError, LeaseError) as error:
        results[name] = {"ok": False, "error": str(error)}
        return False
    results[name] = {"ok": True, **(detail or {})}
    return True


def command_check(env: Mapping[str, str]) -> int:
    settings = _settings(env)
    if settings is None:
        return EXIT_CONFIG
    results: dict[str, Any] = {"watch": describe_watch(settings)}
    mongo = make_client(settings.mongodb_uri, serverSelectionTimeoutMS=5000)

    def mongodb() -> dict[str, Any]:
        hello = mongo.admin.command("hello")
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            raise PyMongoError("not a replica set or sharded cluster: change streams need one")
        found: dict[str, Any] = {"replicaSet": hello.get("setName")}
        scope = settings.scope
        if scope.database is not None:
            existing = set(mongo[scope.database].list_collection_names())
            missing = [name for name in scope.collections if name not in existing]
            found["missingCollections"] = missing  # watched anyway: created later, they appear
        return found

    ok = _probe("mongodb", results, mongodb)
    events = aws_client("events", attempts=1)
    ok &= _probe(
        "eventBus",
        results,
        lambda: {"arn": events.describe_event_bus(Name=settings.event_bus_name)["Arn"]},
    )
    dynamodb = aws_client("dynamodb", attempts=1) if settings.checkpoint_table else None
    store = build_checkpoint_store(settings, mongo=mongo, dynamodb=dynamodb)
    ok &= _probe("checkpoint", results, lambda: _checkpoint_summary(store.load(), store.describe()))
    if settings.dlq_queue_url:
        sqs = aws_client("sqs", attempts=1)
        ok &= _probe(
            "deadLetterQueue",
            results,
            lambda: sqs.get_queue_attributes(
                QueueUrl=settings.dlq_queue_url, AttributeNames=["QueueArn"]
            )["Attributes"],
        )
    if settings.oversize_bucket:
        s3 = aws_client("s3", attempts=1)
        ok &= _probe(
            "oversizeBucket",
            results,
            lambda: s3.head_bucket(Bucket=settings.oversize_bucket) and {},
        )
    print(json.dumps({"ok": ok, **results}, indent=2, default=str))
    if not ok:
        failed = [
            name
            for name, value in results.items()
            if isinstance(value, dict) and value.get("ok") is False
        ]
        print(f"relay check failed: {', '.join(failed)}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_ERROR


def _checkpoint_summary(checkpoint: Any, where: str) -> dict[str, Any]:
    if checkpoint is None:
        return {"store": where, "checkpoint": None}
    ct = checkpoint.position.cluster_time
    return {
        "store": where,
        "clusterTime": None if ct is None else {"t": ct.time, "i": ct.inc},
        "updatedAt": checkpoint.updated_at,
        "checkpointAgeSeconds": round(checkpoint.age_seconds, 1),
        "lagSeconds": None if ct is None else round(max(0.0, time.time() - ct.time), 1),
        "startAfter": checkpoint.position.start_after,
        "fencingToken": checkpoint.fencing_token,
    }


def command_status(env: Mapping[str, str]) -> int:
    settings = _settings(env)
    if settings is None:
        return EXIT_CONFIG
    mongo = make_client(settings.mongodb_uri, serverSelectionTimeoutMS=5000)
    dynamodb = aws_client("dynamodb") if settings.checkpoint_table else None
    store = build_checkpoint_store(settings, mongo=mongo, dynamodb=dynamodb)
    try:
        status = {
            "relayId": settings.relay_id,
            **_checkpoint_summary(store.load(), store.describe()),
        }
        if settings.lease_enabled and dynamodb is not None:
            lease = Lease(
                dynamodb, settings.checkpoint_table or "", settings.relay_id, settings.lease_seconds
            )
            status["lease"] = lease.describe()
    except (CheckpointError, LeaseError) as error:
        print(f"relay status failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(status, indent=2))
    return EXIT_OK


def command_health(env: Mapping[str, str]) -> int:
    path = env.get("HEALTH_FILE") or "/tmp/relay-health.json"
    try:
        max_age = float(env.get("HEALTH_MAX_AGE_SECONDS") or 60)
    except ValueError:
        print("relay health: HEALTH_MAX_AGE_SECONDS must be a number", file=sys.stderr)
        return EXIT_CONFIG
    healthy, reason = check_health(path, max_age)
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return EXIT_OK if healthy else EXIT_ERROR


COMMANDS: dict[str, Callable[[Mapping[str, str]], int]] = {
    "run": command_run,
    "check": command_check,
    "status": command_status,
    "health": command_health,
}


def command_backfill(argv: Sequence[str], env: Mapping[str, str]) -> int:
    from relay import backfill

    return backfill.main(argv, env)


def command_replay(argv: Sequence[str], env: Mapping[str, str]) -> int:
    from relay import replay

    return replay.main(argv, env)


# Commands with options of their own (`python -m relay backfill --help`, README 'Recovery').
COMMANDS_WITH_OPTIONS: dict[str, Callable[[Sequence[str], Mapping[str, str]], int]] = {
    "backfill": command_backfill,
    "replay": command_replay,
}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in COMMANDS_WITH_OPTIONS:
        return COMMANDS_WITH_OPTIONS[given[0]](given[1:], os.environ if env is None else env)
    parser = argparse.ArgumentParser(
        prog="python -m relay",
        description="MongoDB change stream -> EventBridge relay (settings: README 'The relay').",
    )
    parser.add_argument(
        "command", choices=sorted([*COMMANDS, *COMMANDS_WITH_OPTIONS]), help="what to do"
    )
    arguments = parser.parse_args(given)
    return COMMANDS[arguments.command](os.environ if env is None else env)

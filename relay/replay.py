"""`python -m relay replay`: replay a time window of the bus archive back onto the bus.

Starts an EventBridge archive replay (StartReplay: the bus's archive as source, the bus as
destination, optionally only some rules), polls DescribeReplay until it ends, shows progress as
the share of the window replayed, and prints a JSON summary. Replayed events carry `replay-name`,
which every consumer recognises (`ChangeEvent.is_replay`). Never reads MongoDB.
"""

import argparse
import datetime as dt
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from relay.progress import Progress, ProgressMode, ProgressReporter, format_duration
from relay.telemetry import logger

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

FINAL_STATES: Final = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
_NAME: Final = re.compile(r"[.\-_A-Za-z0-9]{1,64}")


class ReplayError(RuntimeError):
    """The replay could not be started or followed; the message says why."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What to replay. `rules` are names on the bus or rule ARNs; empty = every rule."""

    bus_name: str
    start: dt.datetime
    end: dt.datetime
    rules: tuple[str, ...] = ()
    archive: str | None = None
    name: str | None = None
    description: str | None = None


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """ISO 8601 (no zone means UTC), `now`, or `now-90m` / `now-2h` / `now-1d`."""
    current = now or dt.datetime.now(dt.UTC)
    value = text.strip()
    if value == "now":
        return current
    relative = re.fullmatch(r"now-(\d+)([smhd])", value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        return current - dt.timedelta(seconds=seconds)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-12-03T10:00:00Z), now, or now-2h"
        ) from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def default_name(start: dt.datetime, end: dt.datetime) -> str:
    stamp = "%Y%m%dT%H%M%S"
    first, last = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    return f"relay-{first.strftime(stamp)}-{last.strftime(stamp)}-{uuid.uuid4().hex[:6]}"


class Replayer:
    """Starts and follows one replay with an EventBridge client (swappable for tests)."""

    def __init__(
        self,
        events: Any,
        *,
        poll_seconds: float = 5.0,
        wait: Callable[[float], bool] | None = None,
        pause: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._events = events
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._pause = pause
        self._clock = clock

    def stop(self) -> None:
        self._stop.set()

    # Building the StartReplay request.

    def bus_arn(self, bus_name: str) -> str:
        try:
            return str(self._events.describe_event_bus(Name=bus_name)["Arn"])
        except (ClientError, BotoCoreError) as error:
            raise ReplayError(
                f"event bus {bus_name!r} not found or not readable: {error}"
            ) from error

    def archive_arn(self, bus_arn: str, archive: str | None) -> str:
        """The named archive (it must archive this bus), or the bus's only archive."""
        try:
            if archive is not None:
                found = self._events.describe_archive(ArchiveName=archive)
                if found.get("EventSourceArn") != bus_arn:
                    raise ReplayError(f"archive {archive!r} does not archive the bus {bus_arn}")
                return str(found["ArchiveArn"])
            listed = self._events.list_archives(EventSourceArn=bus_arn).get("Archives", [])
        except (ClientError, BotoCoreError) as error:
            raise ReplayError(f"cannot read the archives of {bus_arn}: {error}") from error
        if len(listed) != 1:
            names = ", ".join(sorted(str(item["ArchiveName"]) for item in listed)) or "none"
            raise ReplayError(
                f"the bus has {len(listed)} archives ({names}); name one with --archive"
            )
        name = str(listed[0]["ArchiveName"])
        try:
            return str(self._events.describe_archive(ArchiveName=name)["ArchiveArn"])
        except (ClientError, BotoCoreError) as error:
            raise ReplayError(f"cannot read archive {name!r}: {error}") from error

    def rule_arns(self, bus_name: str, rules: Sequence[str]) -> list[str]:
        arns = []
        for rule in rules:
            if rule.startswith("arn:"):
                arns.append(rule)
                continue
            try:
                found = self._events.describe_rule(Name=rule, EventBusName=bus_name)
            except (ClientError, BotoCoreError) as error:
                raise ReplayError(
                    f"rule {rule!r} not found on bus {bus_name!r}: {error}"
                ) from error
            arns.append(str(found["Arn"]))
        return arns

    def start(self, request: ReplayRequest) -> dict[str, Any]:
        """Send StartReplay; returns the parameters sent plus the answer."""
        if request.end <= request.start:
            raise ReplayError("--to must be after --from")
        name = request.name or default_name(request.start, request.end)
        if not _NAME.fullmatch(name):
            raise ReplayError(f"replay name {name!r}: use 1-64 letters, digits, '.', '-' or '_'")
        bus_arn = self.bus_arn(request.bus_name)
        destination: dict[str, Any] = {"Arn": bus_arn}
        filters = self.rule_arns(request.bus_name, request.rules)
        if filters:
            destination["FilterArns"] = filters
        parameters: dict[str, Any] = {
            "ReplayName": name,
            "EventSourceArn": self.archive_arn(bus_arn, request.archive),
            "EventStartTime": request.start,
            "EventEndTime": request.end,
            "Destination": destination,
        }
        if request.description:
            parameters["Description"] = request.description[:512]
        try:
            answer = self._events.start_replay(**parameters)
        except (ClientError, BotoCoreError) as error:
            raise ReplayError(f"StartReplay refused: {error}") from error
        logger.info(
            "replay started",
            replay_name=name,
            archive_arn=parameters["EventSourceArn"],
            rules=len(filters),
            state=answer.get("State"),
        )
        return {**parameters, "State": answer.get("State"), "ReplayArn": answer.get("ReplayArn")}

    # Following it.

    def follow(
        self,
        name: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        progress_mode: ProgressMode = "auto",
        stream: TextIO | None = None,
    ) -> dict[str, Any]:
        """Poll DescribeReplay until the replay ends; Ctrl-C / SIGTERM cancels it."""
        window = max((end - start).total_seconds(), 1e-9)
        latest: dict[str, Any] = {}

        def replayed_seconds() -> float:
            last = latest.get("EventLastReplayedTime")
            if not isinstance(last, dt.datetime):
                return 0.0
            return min(max((last - start).total_seconds(), 0.0), window)

        progress = Progress(replayed_seconds, window, what="s of events", clock=self._clock)
        reporter = ProgressReporter(
            progress, mode=progress_mode, stream=stream, log_interval_s=max(self._poll, 15.0)
        )
        reporter.start()
        cancelled = False
        try:
            while True:
                try:
                    latest = self._events.describe_replay(ReplayName=name)
                except (ClientError, BotoCoreError) as error:
                    logger.warning("describe replay failed, will retry", error=str(error))
                else:
                    if latest.get("State") in FINAL_STATES:
                        return latest
                if cancelled:
                    self._pause(self._poll)
                elif self._wait(self._poll):
                    # Told to stop: cancel, then keep polling until the replay says it ended.
                    cancelled = True
                    self._cancel(name)
        finally:
            reporter.stop()

    def _cancel(self, name: str) -> None:
        logger.warning("cancelling replay", replay_name=name)
        try:
            self._events.cancel_replay(ReplayName=name)
        except (ClientError, BotoCoreError) as error:
            # Already finished, or not cancellable any more: the poll shows its final state.
            logger.warning("cancel replay refused", replay_name=name, error=str(error))


def summary(started: Mapping[str, Any], final: Mapping[str, Any] | None) -> dict[str, Any]:
    """What was replayed, as printed: window, source, rules, final state and timings."""

    def iso(value: Any) -> Any:
        return value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value

    out: dict[str, Any] = {
        "replayName": started["ReplayName"],
        "replayArn": started.get("ReplayArn"),
        "archiveArn": started["EventSourceArn"],
        "destination": started["Destination"]["Arn"],
        "rules": started["Destination"].get("FilterArns", "all rules on the bus"),
        "eventStartTime": iso(started["EventStartTime"]),
        "eventEndTime": iso(started["EventEndTime"]),
    }
    if final is not None:
        out["state"] = final.get("State")
        if final.get("StateReason"):
            out["stateReason"] = final["StateReason"]
        out["eventLastReplayedTime"] = iso(final.get("EventLastReplayedTime"))
        out["replayStartTime"] = iso(final.get("ReplayStartTime"))
        out["replayEndTime"] = iso(final.get("ReplayEndTime"))
        begun, ended = final.get("ReplayStartTime"), final.get("ReplayEndTime")
        if isinstance(begun, dt.datetime) and isinstance(ended, dt.datetime):
            out["took"] = format_duration((ended - begun).total_seconds())
    else:
        out["state"] = started.get("State")
    return out


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="python -m relay replay",
        description=(
            "Replay a time window of the bus archive onto the bus (EVENT_BUS_NAME). Consumers "
            "see replayed events as replays (detail `replay-name`). See README 'Recovery'."
        ),
    )
    command.add_argument("--from", dest="start", required=True, help="window start (ISO 8601)")
    command.add_argument("--to", dest="end", required=True, help="window end (ISO 8601, or now)")
    command.add_argument(
        "--rules", default="", help="comma-separated rule names or ARNs to deliver to (default all)"
    )
    command.add_argument("--archive", help="archive name (default: the bus's only archive)")
    command.add_argument("--bus", help="event bus name (default: EVENT_BUS_NAME)")
    command.add_argument("--name", help="replay name (default: relay-<from>-<to>-<random>)")
    command.add_argument("--poll-seconds", type=float, default=5.0, help="DescribeReplay interval")
    command.add_argument("--no-wait", action="store_true", help="start it and return at once")
    command.add_argument(
        "--progress", choices=["auto", "bar", "log", "off"], default="auto", help="progress display"
    )
    return command


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    events: Any = None,
) -> int:
    """Parse, start, follow, print. Exit 0 when the replay completed, 1 otherwise, 2 on usage."""
    environment = os.environ if env is None else env
    arguments = parser().parse_args(argv)
    bus = arguments.bus or environment.get("EVENT_BUS_NAME", "").strip()
    if not bus:
        sys.stderr.write("relay replay: EVENT_BUS_NAME (or --bus) is required\n")
        return EXIT_USAGE
    try:
        request = ReplayRequest(
            bus_name=bus,
            start=parse_time(arguments.start),
            end=parse_time(arguments.end),
            rules=tuple(rule.strip() for rule in arguments.rules.split(",") if rule.strip()),
            archive=arguments.archive,
            name=arguments.name,
            description="python -m relay replay",
        )
    except ValueError as error:
        sys.stderr.write(f"relay replay: {error}\n")
        return EXIT_USAGE
    if request.end <= request.start:
        sys.stderr.write("relay replay: --to must be after --from\n")
        return EXIT_USAGE
    if events is None:
        from relay.service import aws_client

        events = aws_client("events")
    replayer = Replayer(events, poll_seconds=max(arguments.poll_seconds, 0.05))

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal received", signal=signal.Signals(signum).name)
        replayer.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = replayer.start(request)
        final = None
        if not arguments.no_wait:
            final = replayer.follow(
                started["ReplayName"], request.start, request.end, progress_mode=arguments.progress
            )
    except ReplayError as error:
        sys.stderr.write(f"relay replay: {error}\n")
        logger.error("replay failed", error=str(error))
        return EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.write(json.dumps(summary(started, final), indent=2, default=str) + "\n")
    if final is None:
        return EXIT_OK
    return EXIT_OK if final.get("State") == "COMPLETED" else EXIT_FAILED

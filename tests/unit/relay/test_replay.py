"""`python -m relay replay`: against moto's archive and replay API, and the exact requests sent.

moto 5.2 implements CreateArchive/StartReplay/DescribeReplay/CancelReplay, but its replay runs
synchronously inside StartReplay, re-sends the WHOLE archive (it ignores EventStartTime,
EventEndTime and Destination.FilterArns) and never reports EventLastReplayedTime. So the
window, the rule filter, the polling and the cancel path are tested on the request the command
sends (botocore Stubber), and `test_moto_replays_the_whole_archive_...` pins moto's difference.
"""

import datetime as dt
import io
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from relay.progress import Progress, ProgressReporter
from relay.replay import Replayer, ReplayError, ReplayRequest, main, parse_time

BUS = "mongodb-changes"
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def aws():
    with mock_aws():
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        bus_arn = events.create_event_bus(Name=BUS)["EventBusArn"]
        archive_arn = events.create_archive(
            ArchiveName="changes-archive",
            EventSourceArn=bus_arn,
            EventPattern=json.dumps({"source": ["mongodb.changestream"]}),
        )["ArchiveArn"]
        queue = sqs.create_queue(QueueName="stock")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        rule_arn = events.put_rule(
            Name="StockAlertRule",
            EventBusName=BUS,
            EventPattern=json.dumps({"source": ["mongodb.changestream"]}),
        )["RuleArn"]
        events.put_targets(
            Rule="StockAlertRule", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}]
        )
        yield {
            "events": events,
            "sqs": sqs,
            "queue": queue,
            "bus_arn": bus_arn,
            "archive_arn": archive_arn,
            "rule_arn": rule_arn,
        }


def drain(sqs, queue) -> list[dict]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        bodies += [json.loads(message["Body"]) for message in messages]


def put(events, n: int) -> None:
    events.put_events(
        Entries=[
            {
                "Source": "mongodb.changestream",
                "DetailType": "MongoDB Change Event",
                "Detail": json.dumps({"eventId": f"e{n}"}),
                "EventBusName": BUS,
            }
        ]
    )


def test_replay_against_moto_delivers_replayed_events_and_prints_the_summary(aws, capsys):
    # GIVEN archived events on the bus (delivered once already)
    for n in range(3):
        put(aws["events"], n)
    assert len(drain(aws["sqs"], aws["queue"])) == 3

    # WHEN a window is replayed to one rule
    code = main(
        [
            "--from", "2026-12-03T10:00:00Z", "--to", "now",
            "--rules", "StockAlertRule", "--progress", "off", "--poll-seconds", "0.05",
            "--name", "repair-1",
        ],
        env={"EVENT_BUS_NAME": BUS},
        events=aws["events"],
    )  # fmt: skip

    # THEN it completed, said what it replayed, and consumers got events marked as replays
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["state"] == "COMPLETED"
    assert printed["replayName"] == "repair-1"
    assert printed["archiveArn"] == aws["archive_arn"]
    assert printed["destination"] == aws["bus_arn"]
    assert printed["rules"] == [aws["rule_arn"]]
    assert printed["eventStartTime"] == "2026-12-03T10:00:00+00:00"
    replayed = drain(aws["sqs"], aws["queue"])
    assert sorted(body["detail"]["eventId"] for body in replayed) == ["e0", "e1", "e2"]
    assert all(body["replay-name"] == "repair-1" for body in replayed)
    described = aws["events"].describe_replay(ReplayName="repair-1")
    assert described["Destination"]["FilterArns"] == [aws["rule_arn"]]


def test_moto_replays_the_whole_archive_ignoring_window_and_filter(aws):
    # moto difference (not AWS behaviour): a window before every archived event and a filter
    # naming no rule of the bus still re-deliver everything. The command is not to blame.
    put(aws["events"], 1)
    drain(aws["sqs"], aws["queue"])
    aws["events"].start_replay(
        ReplayName="old-window",
        EventSourceArn=aws["archive_arn"],
        EventStartTime=dt.datetime(2001, 1, 1, tzinfo=dt.UTC),
        EventEndTime=dt.datetime(2001, 1, 2, tzinfo=dt.UTC),
        Destination={"Arn": aws["bus_arn"], "FilterArns": [aws["rule_arn"] + "-other"]},
    )
    assert len(drain(aws["sqs"], aws["queue"])) == 1
    assert "EventLastReplayedTime" not in aws["events"].describe_replay(ReplayName="old-window")


def stubbed(client, *, archives: list[dict] | None = None):
    stub = Stubber(client)
    bus_arn = f"arn:aws:events:us-east-1:123456789012:event-bus/{BUS}"
    archive_arn = "arn:aws:events:us-east-1:123456789012:archive/changes-archive"
    stub.add_response("describe_event_bus", {"Arn": bus_arn, "Name": BUS}, {"Name": BUS})
    return stub, bus_arn, archive_arn


def test_start_replay_request_carries_window_archive_bus_and_rule_arns():
    # GIVEN an EventBridge that answers as AWS does
    client = boto3.client("events", region_name="us-east-1")
    stub, bus_arn, archive_arn = stubbed(client)
    rule_arn = f"arn:aws:events:us-east-1:123456789012:rule/{BUS}/AuditWriterRule"
    stub.add_response(
        "describe_rule",
        {"Name": "StockAlertRule", "Arn": f"arn:aws:events:us-east-1:123456789012:rule/{BUS}/S"},
        {"Name": "StockAlertRule", "EventBusName": BUS},
    )
    stub.add_response(
        "list_archives",
        {"Archives": [{"ArchiveName": "changes-archive", "EventSourceArn": bus_arn}]},
        {"EventSourceArn": bus_arn},
    )
    stub.add_response(
        "describe_archive",
        {"ArchiveArn": archive_arn, "ArchiveName": "changes-archive", "EventSourceArn": bus_arn},
        {"ArchiveName": "changes-archive"},
    )
    start, end = NOW - dt.timedelta(hours=2), NOW
    stub.add_response(
        "start_replay",
        {"ReplayArn": "arn:aws:events:us-east-1:123456789012:replay/r", "State": "STARTING"},
        {
            "ReplayName": "r",
            "Description": "why",
            "EventSourceArn": archive_arn,
            "EventStartTime": start,
            "EventEndTime": end,
            "Destination": {
                "Arn": bus_arn,
                "FilterArns": [f"arn:aws:events:us-east-1:123456789012:rule/{BUS}/S", rule_arn],
            },
        },
    )
    # AND a replay that runs, then completes
    halfway = start + dt.timedelta(hours=1)
    stub.add_response("describe_replay", {"State": "RUNNING", "EventLastReplayedTime": halfway},
                      {"ReplayName": "r"})  # fmt: skip
    stub.add_response(
        "describe_replay",
        {
            "State": "COMPLETED",
            "EventLastReplayedTime": end,
            "ReplayStartTime": NOW,
            "ReplayEndTime": NOW + dt.timedelta(seconds=75),
        },
        {"ReplayName": "r"},
    )
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False  # not told to stop

    replayer = Replayer(client, poll_seconds=2, wait=wait)

    # WHEN it is started and followed
    with stub:
        started = replayer.start(
            ReplayRequest(
                BUS, start, end, ("StockAlertRule", rule_arn), name="r", description="why"
            )
        )
        final = replayer.follow("r", start, end, progress_mode="off")

    # THEN the request was exactly as above (Stubber checks it) and the end state is reported
    stub.assert_no_pending_responses()
    assert started["State"] == "STARTING"
    assert final["State"] == "COMPLETED"
    assert waits == [2]


def test_stop_while_following_cancels_the_replay_and_reports_it():
    client = boto3.client("events", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("describe_replay", {"State": "RUNNING"}, {"ReplayName": "r"})
    stub.add_response("cancel_replay", {"State": "CANCELLING"}, {"ReplayName": "r"})
    stub.add_response("describe_replay", {"State": "CANCELLING"}, {"ReplayName": "r"})
    stub.add_response("describe_replay", {"State": "CANCELLED"}, {"ReplayName": "r"})
    pauses: list[float] = []
    replayer = Replayer(client, poll_seconds=1, wait=lambda s: True, pause=pauses.append)
    with stub:
        final = replayer.follow("r", NOW - dt.timedelta(hours=1), NOW, progress_mode="off")
    stub.assert_no_pending_responses()
    assert final["State"] == "CANCELLED"
    assert pauses == [1]


def test_a_bus_with_two_archives_needs_one_named():
    client = boto3.client("events", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "list_archives",
        {"Archives": [{"ArchiveName": "a"}, {"ArchiveName": "b"}]},
        {"EventSourceArn": "arn:bus"},
    )
    with stub, pytest.raises(ReplayError, match=r"2 archives \(a, b\); name one with --archive"):
        Replayer(client).archive_arn("arn:bus", None)


def test_a_named_archive_of_another_bus_is_refused():
    client = boto3.client("events", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "describe_archive",
        {"ArchiveArn": "arn:archive/x", "EventSourceArn": "arn:other-bus"},
        {"ArchiveName": "x"},
    )
    with stub, pytest.raises(ReplayError, match="does not archive the bus"):
        Replayer(client).archive_arn("arn:bus", "x")


def test_unknown_rule_is_named(aws):
    with pytest.raises(ReplayError, match="rule 'Nope' not found"):
        Replayer(aws["events"]).rule_arns(BUS, ["Nope"])


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--from", "2026-12-03T10:00Z", "--to", "now"], {}, "EVENT_BUS_NAME"),
        (["--from", "yesterday", "--to", "now"], {"EVENT_BUS_NAME": BUS}, "'yesterday' is not"),
        (["--from", "now", "--to", "now-1h"], {"EVENT_BUS_NAME": BUS}, "--to must be after"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(argv, env, message, capsys):
    assert main(argv, env=env, events=object()) == 2
    assert message in capsys.readouterr().err


def test_parse_time_forms():
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("now-90m", now=NOW) == NOW - dt.timedelta(minutes=90)
    assert parse_time("now-2d", now=NOW) == NOW - dt.timedelta(days=2)
    assert parse_time("2026-12-03T10:00:00") == dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC)
    assert parse_time("2026-12-03T10:00:00+01:00").utcoffset() == dt.timedelta(hours=1)


def test_progress_bar_shows_share_of_window_rate_and_eta():
    clock = iter([0.0, 10.0, 10.0])
    done = iter([1800.0])
    progress = Progress(lambda: next(done), 3600.0, what="s of events", clock=lambda: next(clock))
    out = io.StringIO()
    reporter = ProgressReporter(progress, mode="bar", stream=out)
    reporter.render()
    line = out.getvalue()
    assert line.startswith("\r[" + "#" * 15 + "-" * 15 + "] 1800/3600 s of events  50.0%")
    assert "180/s" in line
    assert "ETA 0:10" in line

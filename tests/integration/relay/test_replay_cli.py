"""`python -m relay replay` as a process against moto_server's archive and replay API.

moto replays the whole archive whatever the window and rule filter (see tests/unit/relay/
test_replay.py, which checks the exact requests); here the command's real path is exercised:
process, HTTP client, polling, exit code and printed summary.
"""

import json
import os
import subprocess
import sys

from tests.integration.relay.conftest import SOURCE


def test_replay_command_replays_the_archive_to_the_bus(world):
    # GIVEN an archive of the bus, and three events that went through it
    events = world.client("events")
    bus_arn = events.describe_event_bus(Name=world.bus)["Arn"]
    events.create_archive(
        ArchiveName=f"{world.bus}-archive",
        EventSourceArn=bus_arn,
        EventPattern=json.dumps({"source": [SOURCE]}),
    )
    events.put_events(
        Entries=[
            {
                "Source": SOURCE,
                "DetailType": "MongoDB Change Event",
                "Detail": json.dumps({"eventId": f"e{n}"}),
                "EventBusName": world.bus,
            }
            for n in range(3)
        ]
    )
    world.collect()
    assert len(world.seen) == 3

    # WHEN the last hour is replayed to the rule that feeds the queue
    env = {
        "PATH": os.environ.get("PATH", ""),
        "EVENT_BUS_NAME": world.bus,
        "AWS_ENDPOINT_URL": world.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = [sys.executable, "-m", "relay", "replay", "--from", "now-1h", "--to", "now"]
    command += ["--rules", "everything", "--poll-seconds", "0.2", "--progress", "log"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    # THEN it completed and said so, and each event arrived again, marked as a replay
    assert done.returncode == 0, done.stderr + done.stdout
    summary = json.loads(done.stdout[done.stdout.rindex("{\n") :])
    assert summary["state"] == "COMPLETED"
    assert summary["rules"] == [
        events.describe_rule(Name="everything", EventBusName=world.bus)["Arn"]
    ]
    replayed = [e for envelopes in _collect_all(world) for e in envelopes if "replay-name" in e]
    assert sorted(e["detail"]["eventId"] for e in replayed) == ["e0", "e1", "e2"]
    assert {e["replay-name"] for e in replayed} == {summary["replayName"]}


def _collect_all(world) -> list[list[dict]]:
    world.collect()
    return list(world.seen.values())

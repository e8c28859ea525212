"""The stand-ins start on free ports, answer, and leave no process behind."""

import os
import urllib.request
from pathlib import Path

import boto3
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from localdev import failpoints
from localdev.servers import ManagedProcess, running_moto, running_secantus, wait_until


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def living_members(group: int) -> list[int]:
    """Processes of a process group that still run (zombies wait for a reaper, not for us)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgid = fields[0], int(fields[2])
        if pgid == group and state != "Z":
            members.append(int(stat.parent.name))
    return members


def test_secantus_starts_answers_as_a_replica_set_and_stops():
    with running_secantus() as server:
        client = MongoClient(server.uri, serverSelectionTimeoutMS=5000)
        hello = client.admin.command("hello")
        client.close()
        pid = server.process.process.pid
    assert hello["setName"] == "secantus"
    assert process_gone(pid)


def test_moto_starts_answers_resets_and_stops():
    with running_moto() as server:
        sqs = boto3.client(
            "sqs",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        sqs.create_queue(QueueName="q")
        assert len(sqs.list_queues().get("QueueUrls", [])) == 1
        server.reset()
        assert sqs.list_queues().get("QueueUrls", []) == []
        pid = server.process.process.pid
        with urllib.request.urlopen(f"{server.endpoint}/moto-api/data.json", timeout=5) as reply:
            assert reply.status == 200
    assert process_gone(pid)


def test_a_stuck_process_is_killed_with_its_children():
    # GIVEN a process that ignores SIGTERM and has a child
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    managed = ManagedProcess("stuck", ["python3", "-c", script])
    managed.start()
    wait_until(lambda: "ready" in managed.output_tail(), deadline_s=20, what="child started")
    group = managed.process.pid

    # WHEN it is stopped with a short deadline
    managed.stop(deadline_s=1)

    # THEN nothing in its process group is left running
    wait_until(lambda: living_members(group) == [], deadline_s=10, what="group gone")


def test_fail_point_is_armed_then_cleared(mongo_client, fresh_db):
    # A real server needs enableTestCommands=1 for this (the README's docker command sets it).
    fresh_db.c.insert_one({"x": 1})
    failing_find = {"failCommands": ["find"], "errorCode": 2}
    with failpoints.fail_point(mongo_client, "failCommand", {"times": 1}, failing_find):
        with pytest.raises(OperationFailure) as caught:
            fresh_db.c.find_one()
        assert caught.value.code == 2
    assert fresh_db.c.find_one()["x"] == 1

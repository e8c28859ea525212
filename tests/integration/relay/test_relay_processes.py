"""The relay as the process ECS runs: SIGKILL at random points, SIGTERM, and the leader lease."""

import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from localdev.servers import ManagedProcess, wait_until
from tests.integration.relay.conftest import relay_env, relay_process, wait_streaming

MAX_IN_FLIGHT = 4
BATCH = 10


class Writer(threading.Thread):
    """Inserts documents n = 0..total-1 in small paced batches, as an application would.

    At each of `pause_points` (counts written) it waits until `resume` is released, so a test can
    hold the application back while it restarts a relay, however slow the machine is.
    """

    def __init__(
        self,
        collection,
        total: int,
        batch: int = 20,
        pause_s: float = 0.2,
        pause_points: tuple[int, ...] = (),
    ) -> None:
        super().__init__(daemon=True)
        self.collection = collection
        self.total = total
        self.batch = batch
        self.pause_s = pause_s
        self.pause_points = sorted(pause_points)
        self.resume = threading.Semaphore(0)
        self.written = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while self.written < self.total and not self.stopped.is_set():
            if self.pause_points and self.written >= self.pause_points[0]:
                self.pause_points.pop(0)
                while not self.resume.acquire(timeout=0.2):
                    if self.stopped.is_set():
                        return
            count = min(self.batch, self.total - self.written)
            if self.pause_points:
                count = min(count, self.pause_points[0] - self.written)
            self.collection.insert_many(
                [{"n": n, "cantidad": n % 50} for n in range(self.written, self.written + count)]
            )
            self.written += count
            self.stopped.wait(self.pause_s)  # pacing, so kills land while writes go on


def exit_code(process: ManagedProcess) -> int | None:
    return None if process.process is None else process.process.returncode


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing_and_duplicates_stay_bounded(world, fresh_db, mongo):
    # GIVEN a relay process and an application writing changes (moto delivers ~40 events/s to
    # SQS on a loaded 2-core machine, which bounds how many a test can afford)
    total, kills = 800, 4
    chance = random.Random(20261203)  # fixed seed: the same kill points on every run
    env = relay_env(
        world,
        mongo.uri,
        fresh_db.name,
        MAX_IN_FLIGHT_REQUESTS=str(MAX_IN_FLIGHT),
        BATCH_MAX_ENTRIES=str(BATCH),
    )
    # The run is cut in kills + 1 segments; kill k lands at a random point inside segment k, and
    # the writer holds at the end of that segment until the restarted relay streams again.
    segment = total // (kills + 1)
    pause_points = tuple(segment * (kill + 1) for kill in range(kills))
    writer = Writer(fresh_db.productos, total, pause_points=pause_points)
    relay = relay_process(env, "relay-kill-0")
    relay.start()
    try:
        wait_streaming(relay)
        writer.start()

        # WHEN it is killed with SIGKILL at random points and restarted each time
        killed_while_writing = 0
        for kill in range(kills):
            kill_at = segment * kill + chance.randint(segment // 4, segment * 3 // 4)
            world.wait_for(
                lambda kill_at=kill_at: writer.written >= kill_at,
                deadline_s=60,
                what=f"{kill_at} changes written (the random kill point)",
            )
            killed_while_writing += writer.written < total
            relay.kill()
            assert exit_code(relay) == -signal.SIGKILL
            relay.stop()
            relay = relay_process(env, f"relay-kill-{kill + 1}")
            relay.start()
            wait_streaming(relay)
            writer.resume.release()

        # THEN after the last restart every change reaches the bus
        writer.join(timeout=60)
        assert writer.written == total
        assert killed_while_writing == kills, "kills must land while changes are being written"
        world.wait_for(
            lambda: len(set(world.inserted_numbers())) >= total,
            deadline_s=90,
            what=f"all {total} inserts on the bus",
        )
    finally:
        writer.stopped.set()
        relay.stop()
    numbers = world.inserted_numbers()
    assert sorted(numbers) == list(range(total)), "a change is missing"
    # Duplicates: at most what was in flight or accepted but not yet checkpointed at each kill.
    duplicates = sum(len(envelopes) - 1 for envelopes in world.seen.values())
    in_flight_bound = MAX_IN_FLIGHT * BATCH
    checkpoint_lag_bound = 100  # CHECKPOINT_INTERVAL_SECONDS=0.2 at this rig's forwarding rate
    assert duplicates <= kills * (in_flight_bound + checkpoint_lag_bound), duplicates


def test_sigterm_flushes_checkpoints_and_exits_0_within_the_deadline(world, fresh_db, mongo):
    # GIVEN a relay process forwarding a backlog
    env = relay_env(world, mongo.uri, fresh_db.name, STOP_DEADLINE_SECONDS="10")
    relay = relay_process(env, "relay-term")
    relay.start()
    try:
        wait_streaming(relay)
        # rendering with fastejson, as the image does (its build stage compiles it)
        assert '"renderer":"fastejson"' in _log(relay)
        fresh_db.productos.insert_many([{"n": n} for n in range(200)])
        world.wait_for(lambda: len(world.seen) >= 20, what="forwarding under way")
        # the container health check passes while it streams
        health = subprocess.run(
            [sys.executable, "-m", "relay", "health"],
            env={"PATH": "", "HEALTH_FILE": env["HEALTH_FILE"]},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert health.returncode == 0, health.stderr
        assert health.stdout.startswith("relay streaming"), health.stdout

        # WHEN it gets SIGTERM
        started = time.monotonic()
        relay.stop(deadline_s=15)
        took = time.monotonic() - started
    finally:
        relay.stop()

    # THEN it exits 0 within the deadline, having checkpointed all it sent
    assert exit_code(relay) == 0
    assert took < 15  # the 10 s deadline plus process exit on a loaded machine
    world.collect()
    sent_before_stop = set(world.seen)

    # AND a restart sends each remaining change once, and none already sent
    again = relay_process(env, "relay-term-again")
    again.start()
    try:
        wait_streaming(again)
        world.wait_for(lambda: len(set(world.inserted_numbers())) >= 200, what="all 200")
    finally:
        again.stop()
    assert sorted(world.inserted_numbers()) == list(range(200))
    assert all(len(envelopes) == 1 for envelopes in world.seen.values())
    assert sent_before_stop <= set(world.seen)


def test_only_the_lease_holder_streams_and_the_standby_takes_over(world, fresh_db, mongo):
    # GIVEN two relays with the same id and a 3 s lease
    env = relay_env(world, mongo.uri, fresh_db.name, LEASE_ENABLED="true", LEASE_SECONDS="3")
    leader = relay_process(env, "relay-leader")
    standby = relay_process(env, "relay-standby")
    leader.start()
    try:
        wait_streaming(leader)
        standby.start()
        wait_until(
            lambda: "waiting for the lease" in _log(standby), deadline_s=30, what="standby waiting"
        )
        fresh_db.productos.insert_many([{"n": n} for n in range(30)])
        world.wait_for(lambda: len(world.inserted_numbers()) >= 30, what="30 via the leader")
        assert "change stream open" not in _log(standby)

        # WHEN the leader dies
        leader.kill()
        killed_at = time.monotonic()
        fresh_db.productos.insert_many([{"n": n} for n in range(30, 60)])

        # THEN the standby takes the lease within the lease time and forwards the rest
        wait_streaming(standby, deadline_s=20)
        took_over_s = time.monotonic() - killed_at
        world.wait_for(lambda: len(set(world.inserted_numbers())) >= 60, what="60 in all")
    finally:
        leader.stop()
        standby.stop()
    assert sorted(set(world.inserted_numbers())) == list(range(60))
    assert took_over_s < 3 + 3 / 3 + 5  # lease + one acquire period + process slack


def _log(process: ManagedProcess) -> str:
    return process.log_path.read_text() if process.log_path and process.log_path.exists() else ""

"""Checkpoint stores (DynamoDB, MongoDB) and the lease: never backwards, never a stale leader."""

import threading
import time

import boto3
import mongomock
import pytest
from bson import Timestamp
from moto import mock_aws

from localdev.servers import wait_until
from relay.checkpoint import DynamoDBCheckpointStore, MongoCheckpointStore, Position
from relay.lease import Lease, LeaseError, LeaseKeeper
from tests.unit.relay.helpers import create_checkpoint_table

TABLE = "relay-checkpoints"


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_checkpoint_table(client, TABLE)
        yield client


@pytest.fixture(params=["dynamodb", "mongodb"])
def store(request, dynamodb):
    if request.param == "dynamodb":
        return DynamoDBCheckpointStore(dynamodb, TABLE, "r1")
    collection = mongomock.MongoClient().relay.checkpoints
    return MongoCheckpointStore(collection, "r1")


def position(t: int, i: int = 1, token: str | None = None, **kwargs) -> Position:
    return Position({"_data": token or f"tok-{t}-{i}"}, Timestamp(t, i), **kwargs)


def test_an_empty_store_has_no_checkpoint(store):
    assert store.load() is None


def test_a_saved_position_loads_back_exactly(store):
    saved = position(1_796_300_000, 7, start_after=True)

    assert store.save(saved, fencing_token=3)

    loaded = store.load()
    assert dict(loaded.position.token) == {"_data": "tok-1796300000-7"}
    assert loaded.position.cluster_time == Timestamp(1_796_300_000, 7)
    assert loaded.position.start_after is True
    assert loaded.fencing_token == 3
    assert loaded.age_seconds < 60


def test_an_older_position_never_overwrites_a_newer_one(store):
    assert store.save(position(200, 5))

    assert not store.save(position(200, 4))
    assert not store.save(position(199, 9))

    assert store.load().position.cluster_time == Timestamp(200, 5)


def test_an_equal_cluster_time_may_advance_the_token(store):
    # GIVEN a quiet stream: the postBatchResumeToken moves, the last change's time does not
    assert store.save(position(200, 5, token="event"))

    assert store.save(position(200, 5, token="quiet-later"))

    assert dict(store.load().position.token) == {"_data": "quiet-later"}


def test_a_deposed_leader_cannot_write_after_its_successor(store):
    assert store.save(position(300), fencing_token=2)

    assert not store.save(position(400), fencing_token=1)

    assert store.load().position.cluster_time == Timestamp(300, 1)


def test_the_lease_has_one_holder_and_passes_on_at_expiry(dynamodb):
    # GIVEN two relays with the same id
    leader = Lease(dynamodb, TABLE, "r1", lease_seconds=3)
    standby = Lease(dynamodb, TABLE, "r1", lease_seconds=3)

    # WHEN the first takes the lease, the second cannot
    assert leader.try_acquire()
    assert not standby.try_acquire()
    assert leader.renew()

    # WHEN the leader stops renewing and the lease expires (clock moved by rewriting the item)
    dynamodb.update_item(
        TableName=TABLE,
        Key={"relayId": {"S": "r1#lease"}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": str(time.time() - 1)}},
    )

    # THEN the standby takes over with a higher fencing token and the old leader is deposed
    assert standby.try_acquire()
    assert standby.fencing_token == leader.fencing_token + 1
    assert not leader.renew()
    assert standby.describe()["owner"] == standby.owner


def test_a_released_lease_is_free_at_once(dynamodb):
    leader = Lease(dynamodb, TABLE, "r1", lease_seconds=30)
    standby = Lease(dynamodb, TABLE, "r1", lease_seconds=30)
    assert leader.try_acquire()

    leader.release()

    assert standby.try_acquire()


def test_lease_and_checkpoint_share_the_table_without_clashing(dynamodb):
    lease = Lease(dynamodb, TABLE, "r1", lease_seconds=30)
    store = DynamoDBCheckpointStore(dynamodb, TABLE, "r1")

    assert lease.try_acquire()
    assert store.save(position(100), fencing_token=lease.fencing_token)

    assert store.load().fencing_token == lease.fencing_token
    assert lease.renew()


# The lease keeper: standby until the lease is free, renewal on its own thread, loss told once.


class ScriptedLease:
    """A lease whose renewals answer from a script (True, False or an exception to raise)."""

    def __init__(self, *renewals: bool | Exception, lease_seconds: float = 30.0) -> None:
        self.lease_seconds = lease_seconds
        self.owner = "me"
        self.fencing_token = 0
        self.releases = 0
        self._renewals = list(renewals)

    def try_acquire(self) -> bool:
        self.fencing_token = 1
        return True

    def renew(self) -> bool:
        answer = self._renewals.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def release(self) -> None:
        self.releases += 1


def keeper_for(lease, stop=None, on_lost=lambda: None, **callbacks) -> LeaseKeeper:
    return LeaseKeeper(lease, stop=stop or threading.Event(), on_lost=on_lost, **callbacks)


def test_a_standby_waits_until_the_leader_releases_then_holds_the_lease(dynamodb):
    # GIVEN a leader holding the lease, and a standby keeper waiting for it on a thread
    leader = keeper_for(Lease(dynamodb, TABLE, "r1", lease_seconds=3))
    assert leader.acquire("r1")
    waits: list[float] = []
    standby = keeper_for(
        Lease(dynamodb, TABLE, "r1", lease_seconds=3), on_waiting=lambda: waits.append(1)
    )
    acquired: list[bool] = []
    thread = threading.Thread(target=lambda: acquired.append(standby.acquire("r1")))
    thread.start()
    try:
        wait_until(lambda: len(waits) >= 2, deadline_s=10, what="the standby waiting twice")
        assert not acquired

        # WHEN the leader releases it
        leader.release()

        # THEN the standby holds it, with a newer fencing token
        thread.join(timeout=10)
        assert acquired == [True]
        assert standby.fencing_token == leader.fencing_token + 1
    finally:
        standby.release()
        leader.release()
        thread.join(timeout=10)


def test_waiting_ends_without_the_lease_when_told_to_stop(dynamodb):
    leader = keeper_for(Lease(dynamodb, TABLE, "r1", lease_seconds=30))
    assert leader.acquire("r1")
    stop = threading.Event()
    stop.set()

    assert not keeper_for(Lease(dynamodb, TABLE, "r1", lease_seconds=30), stop).acquire("r1")
    leader.release()


def test_the_holder_renews_on_its_own_thread(dynamodb):
    # GIVEN a 3 s lease held by a keeper (renewed every second)
    lease = Lease(dynamodb, TABLE, "r1", lease_seconds=3)
    keeper = keeper_for(lease)
    assert keeper.acquire("r1")
    first_expiry = lease.describe()["expiresAt"]
    try:
        # THEN the stored expiry moves on without any call from the holder
        wait_until(
            lambda: lease.describe()["expiresAt"] > first_expiry,
            deadline_s=10,
            what="a renewal",
        )
        assert not keeper.lost.is_set()
    finally:
        keeper.release()
    assert lease.describe()["expiresAt"] == 0


def test_a_deposed_holder_reports_the_loss_once_and_does_not_release(dynamodb):
    # GIVEN a keeper holding a 30 s lease, which then expired and another task took
    losses: list[int] = []
    keeper = LeaseKeeper(
        Lease(dynamodb, TABLE, "r1", lease_seconds=30),
        stop=threading.Event(),
        on_lost=lambda: losses.append(1),
    )
    assert keeper.acquire("r1")
    dynamodb.update_item(
        TableName=TABLE,
        Key={"relayId": {"S": "r1#lease"}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": str(time.time() - 1)}},
    )
    successor = Lease(dynamodb, TABLE, "r1", lease_seconds=30)
    assert successor.try_acquire()

    # WHEN the keeper's renewal runs, twice
    keeper._renew()
    keeper._renew()

    # THEN the loss is reported once, and releasing leaves the successor's lease alone
    assert losses == [1]
    assert keeper.lost.is_set()
    keeper.release()
    assert successor.describe()["owner"] == successor.owner
    assert successor.describe()["expiresAt"] > time.time()


def test_a_failed_renewal_is_retried_while_the_lease_still_runs():
    # GIVEN a 30 s lease renewed just now, then the table unreachable
    lease = ScriptedLease(LeaseError("unreachable"), LeaseError("unreachable"))
    losses: list[int] = []
    keeper = keeper_for(lease, on_lost=lambda: losses.append(1))
    keeper._renewed_at = time.monotonic()

    # WHEN a renewal fails early in the lease, it is retried later
    keeper._renew()
    assert not keeper.lost.is_set()

    # WHEN one fails after 80 % of the lease has gone by, the lease counts as lost
    keeper._renewed_at = time.monotonic() - 25
    keeper._renew()
    assert keeper.lost.is_set()
    assert losses == [1]


def test_release_gives_the_lease_up_once():
    lease = ScriptedLease()
    keeper = keeper_for(lease)
    keeper.release()
    assert lease.releases == 0  # never held

    assert keeper.acquire("r1")
    keeper.release()
    keeper.release()

    assert lease.releases == 1

"""Checkpoint stores (DynamoDB, MongoDB) and the lease: never backwards, never a stale leader."""

import time

import boto3
import mongomock
import pytest
from bson import Timestamp
from moto import mock_aws

from relay.checkpoint import DynamoDBCheckpointStore, MongoCheckpointStore, Position
from relay.lease import Lease
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

"""Where the relay remembers how far it got: a resume token per relay id, never moved backwards.

Two stores, one protocol: a DynamoDB item (default) or a MongoDB document. Writes are conditional
on the cluster time (an older position never overwrites a newer one) and on the lease's fencing
token (a deposed leader cannot write at all). A checkpoint is only ever a position whose event,
and every event before it, EventBridge accepted; this module stores it, it never decides it.
"""

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import bson
from botocore.exceptions import ClientError
from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from change_contract.ejson import CODEC_OPTIONS
from relay.telemetry import logger


class CheckpointError(RuntimeError):
    """The checkpoint store could not be read or written."""


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the change stream: a resume token and the cluster time it stands for.

    `start_after` marks an `invalidate` token, which must be reopened with `startAfter`.
    `cluster_time` is None only when nothing told us the time (a fresh stream's first token).
    """

    token: Mapping[str, Any]
    cluster_time: Timestamp | None
    start_after: bool = False

    @property
    def order_key(self) -> int:
        """Cluster time as one integer (seconds << 32 | increment), the store's write condition."""
        if self.cluster_time is None:
            return 0
        return (self.cluster_time.time << 32) | self.cluster_time.inc


@dataclass(frozen=True, slots=True)
class Checkpoint:
    relay_id: str
    position: Position
    updated_at: float  # epoch seconds of the write
    fencing_token: int

    @property
    def age_seconds(self) -> float:
        return max(0.0, time.time() - self.updated_at)


class CheckpointStore(Protocol):
    def load(self) -> Checkpoint | None: ...

    def save(self, position: Position, fencing_token: int = 0) -> bool:
        """Write `position`; False when the stored one is newer or has a newer fencing token."""
        ...

    def describe(self) -> str: ...


def token_bytes(token: Mapping[str, Any]) -> bytes:
    if isinstance(token, RawBSONDocument):
        return bytes(token.raw)
    return bson.encode(token)


def token_from_bytes(data: bytes) -> RawBSONDocument:
    return RawBSONDocument(data, CODEC_OPTIONS)


class DynamoDBCheckpointStore:
    """One item per relay id in a table keyed by `relayId` (S)."""

    def __init__(self, client: Any, table: str, relay_id: str) -> None:
        self._client = client
        self._table = table
        self._relay_id = relay_id

    def describe(self) -> str:
        return f"dynamodb://{self._table}/{self._relay_id}"

    def load(self) -> Checkpoint | None:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"relayId": {"S": self._relay_id}}, ConsistentRead=True
            ).get("Item")
        except ClientError as error:
            raise CheckpointError(
                f"cannot read checkpoint from {self.describe()}: {error}"
            ) from error
        if not item or "resumeToken" not in item:
            return None
        cluster_time = None
        if "clusterTimeT" in item:
            cluster_time = Timestamp(int(item["clusterTimeT"]["N"]), int(item["clusterTimeI"]["N"]))
        position = Position(
            token=token_from_bytes(item["resumeToken"]["B"]),
            cluster_time=cluster_time,
            start_after=item.get("startAfter", {}).get("BOOL", False),
        )
        return Checkpoint(
            relay_id=self._relay_id,
            position=position,
            updated_at=float(item.get("updatedAt", {}).get("N", "0")),
            fencing_token=int(item.get("fencingToken", {}).get("N", "0")),
        )

    def save(self, position: Position, fencing_token: int = 0) -> bool:
        now = time.time()
        values: dict[str, Any] = {
            ":token": {"B": token_bytes(position.token)},
            ":key": {"N": str(position.order_key)},
            ":after": {"BOOL": position.start_after},
            ":now": {"N": f"{now:.3f}"},
            ":iso": {"S": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()},
            ":fence": {"N": str(fencing_token)},
        }
        update = (
            "SET resumeToken = :token, orderKey = :key, startAfter = :after, updatedAt = :now, "
            "updatedAtIso = :iso, fencingToken = :fence"
        )
        if position.cluster_time is not None:
            values[":t"] = {"N": str(position.cluster_time.time)}
            values[":i"] = {"N": str(position.cluster_time.inc)}
            update += ", clusterTimeT = :t, clusterTimeI = :i"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"relayId": {"S": self._relay_id}},
                UpdateExpression=update,
                ConditionExpression=(
                    "(attribute_not_exists(orderKey) OR orderKey <= :key) AND "
                    "(attribute_not_exists(fencingToken) OR fencingToken <= :fence)"
                ),
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise CheckpointError(
                f"cannot write checkpoint to {self.describe()}: {error}"
            ) from error
        return True


class MongoCheckpointStore:
    """One document per relay id (`_id`) in a MongoDB collection, for teams without DynamoDB."""

    def __init__(self, collection: Collection[Any], relay_id: str) -> None:
        self._collection = collection
        self._relay_id = relay_id

    def describe(self) -> str:
        return f"mongodb://{self._collection.full_name}/{self._relay_id}"

    def load(self) -> Checkpoint | None:
        try:
            found = self._collection.find_one({"_id": self._relay_id})
        except PyMongoError as error:
            raise CheckpointError(
                f"cannot read checkpoint from {self.describe()}: {error}"
            ) from error
        if found is None or "resumeToken" not in found:
            return None
        document = dict(found)
        position = Position(
            token=token_from_bytes(bson.encode(document["resumeToken"])),
            cluster_time=document.get("clusterTime"),
            start_after=bool(document.get("startAfter", False)),
        )
        updated = document.get("updatedAt")
        updated_at = updated.timestamp() if isinstance(updated, dt.datetime) else 0.0
        return Checkpoint(
            relay_id=self._relay_id,
            position=position,
            updated_at=updated_at,
            fencing_token=int(document.get("fencingToken", 0)),
        )

    def save(self, position: Position, fencing_token: int = 0) -> bool:
        fields: dict[str, Any] = {
            "resumeToken": position.token,
            "orderKey": bson.Int64(position.order_key),
            "startAfter": position.start_after,
            "updatedAt": dt.datetime.now(dt.UTC),
            "fencingToken": fencing_token,
        }
        if position.cluster_time is not None:
            fields["clusterTime"] = position.cluster_time
        condition = {
            "_id": self._relay_id,
            "orderKey": {"$lte": bson.Int64(position.order_key)},
            "fencingToken": {"$lte": fencing_token},
        }
        try:
            # An upsert whose filter does not match an existing document tries to insert a second
            # document with the same `_id`: the duplicate-key error is the "stored one is newer".
            self._collection.update_one(condition, {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            return False
        except PyMongoError as error:
            raise CheckpointError(
                f"cannot write checkpoint to {self.describe()}: {error}"
            ) from error
        return True


def log_loaded(checkpoint: Checkpoint | None, store: CheckpointStore) -> None:
    if checkpoint is None:
        logger.info("no checkpoint, starting from now", store=store.describe())
        return
    ct = checkpoint.position.cluster_time
    logger.info(
        "resuming from checkpoint",
        store=store.describe(),
        cluster_time=None if ct is None else [ct.time, ct.inc],
        checkpoint_age_s=round(checkpoint.age_seconds, 1),
        start_after=checkpoint.position.start_after,
    )

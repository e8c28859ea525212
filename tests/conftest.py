"""Fixtures shared by every tier: the local MongoDB and AWS stand-ins, started on demand.

MongoDB is SecantusDB on a free port unless `MONGODB_URI` names a real deployment, in which case
every test that needs MongoDB runs against that instead, so differences cannot hide.
"""

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pymongo import MongoClient

from localdev.servers import MongoServer, MotoServer, start_moto, start_secantus


@dataclass
class MongoTarget:
    """The MongoDB the tests run against."""

    uri: str
    is_secantus: bool
    server: MongoServer | None = None

    def client(self, **options) -> MongoClient:
        return MongoClient(self.uri, serverSelectionTimeoutMS=10_000, **options)


@pytest.fixture(scope="session")
def mongo() -> Iterator[MongoTarget]:
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield MongoTarget(uri=uri, is_secantus=False)
        return
    server = start_secantus(test_commands=True)
    try:
        yield MongoTarget(uri=server.uri, is_secantus=True, server=server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongo_client(mongo: MongoTarget) -> Iterator[MongoClient]:
    client = mongo.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fresh_db(mongo_client: MongoClient) -> Iterator:
    """A database no other test uses, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield mongo_client[name]
    finally:
        mongo_client.drop_database(name)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_endpoint(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point every boto3 client made in the test at moto_server, and reset it afterwards."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield moto_server.endpoint
    finally:
        moto_server.reset()

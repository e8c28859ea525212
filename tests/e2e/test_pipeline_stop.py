"""Stopping the local pipeline ends the functions' containers: a function loaded in-process
releases the connections it opened, so none outlives the pipeline (or dials a stopped server
from the tests that run after it)."""

import sys

import pytest
from pymongo.errors import InvalidOperation

from tests.e2e.helpers import e2e_pipeline, fresh_scenario, run_paced

AUDIT_MODULE = "local_audit_writer_app"


def test_stopping_the_pipeline_closes_the_audit_writers_mongodb_client():
    # GIVEN a pipeline whose audit writer has stored a record, so it holds its own MongoClient
    with e2e_pipeline("stop") as pipeline:
        run_paced(pipeline, fresh_scenario(), range(1))
        client = sys.modules[AUDIT_MODULE].store()._collection.database.client
        assert client.admin.command("ping")["ok"] == 1

    # WHEN the pipeline has stopped (leaving the block)
    # THEN the container is gone and its client is closed
    assert AUDIT_MODULE not in sys.modules
    with pytest.raises(InvalidOperation):
        client.admin.command("ping")

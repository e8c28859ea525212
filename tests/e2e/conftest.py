"""The whole local pipeline for the end-to-end tests: one per test module, stopped afterwards.

Uses `MONGODB_URI` when set (a real replica set with test commands enabled), else SecantusDB.
"""

from collections.abc import Iterator

import pytest

from localdev.pipeline import LocalPipeline
from tests.e2e.helpers import e2e_pipeline


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    with e2e_pipeline("e2e") as running:
        yield running

"""The whole local pipeline for the end-to-end tests: one per test module, stopped afterwards.

Uses `MONGODB_URI` when set (a real replica set with test commands enabled), else SecantusDB.
"""

import os
import uuid
from collections.abc import Iterator

import pytest

from localdev.pipeline import LocalPipeline, PipelineConfig, missing, running_pipeline, survey


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    gaps = missing(survey())
    assert not gaps, f"the end-to-end tests need every part; missing: {gaps}"
    config = PipelineConfig(
        mongodb_uri=os.environ.get("MONGODB_URI") or None,
        relay_id=f"e2e-{uuid.uuid4().hex[:8]}",
        retry_delays_s=(0.0, 1.0),
    )
    with running_pipeline(config) as running:
        yield running

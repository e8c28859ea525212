"""`events/*.json` are what the contract makes now, validate against the schema, and decode."""

import json
from pathlib import Path

import jsonschema
import pytest

from change_contract import ContractError, decode_event
from localdev.generate_events import EVENTS_DIR, stale_samples
from localdev.samples import MALFORMED, SAMPLES

SCHEMA_PATH = (
    Path(__file__).resolve().parents[2] / "layers/shared/change_contract/schema/detail.schema.json"
)
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALID = sorted(set(SAMPLES) - MALFORMED)


def load(name: str) -> dict:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def test_committed_samples_are_what_the_generator_makes():
    assert stale_samples() == [], "run `make events` and commit the result"


def test_no_stray_sample_files():
    names = {path.stem for path in EVENTS_DIR.glob("*.json")} - {"env"}
    assert names == set(SAMPLES)


def test_schema_is_itself_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", VALID)
def test_sample_detail_validates_against_the_schema(name):
    jsonschema.validate(load(name)["detail"], SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("name", VALID)
def test_sample_decodes(name):
    event = decode_event(load(name))
    assert event.detail.event_id == load(name)["detail"]["eventId"]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_sample_fails_schema_and_decode(name):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(load(name)["detail"], SCHEMA, cls=jsonschema.Draft202012Validator)
    with pytest.raises(ContractError):
        decode_event(load(name))


def test_replayed_sample_is_recognised():
    assert decode_event(load("update-low-stock-replayed")).is_replay
    assert not decode_event(load("update-low-stock")).is_replay

"""`apply_update_description` rebuilds the document an update left, as MongoDB's `$set`/`$unset`
would: checked against mongomock's update semantics with generated documents and updates."""

import copy
import re
from typing import Any

import mongomock
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from change_contract import ContractError, apply_update_description, decode_event
from change_contract.models import UpdateDescription
from tests.unit.functions.conftest import read_event

NAMES = ("a", "b", "c", "cantidad")
_leaves = st.integers(-5, 50) | st.text(max_size=3) | st.none()
_values = st.recursive(
    _leaves,
    lambda inner: st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
    max_leaves=6,
)
_documents = st.dictionaries(st.sampled_from(NAMES), _values, max_size=4)
_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(".".join)


def description(
    updated: dict[str, Any] | None = None, removed: list[str] | None = None, **more: Any
) -> UpdateDescription:
    return UpdateDescription.model_validate(
        {"updatedFields": updated or {}, "removedFields": removed or [], **more}
    )


def _settable(document: dict[str, Any], path: str) -> bool:
    """MongoDB refuses a path through a value that is not a document (or array)."""
    current: Any = document
    for part in path.split(".")[:-1]:
        if not isinstance(current, dict):
            return False
        if part not in current:
            return True
        current = current[part]
    return isinstance(current, dict)


def _prefix_free(paths: list[str]) -> bool:
    """No path is another's parent: MongoDB refuses such an update as conflicting."""
    return not any(
        first != second and (second + ".").startswith(first + ".")
        for first in paths
        for second in paths
    )


@st.composite
def updates(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    document = draw(_documents)
    paths = draw(st.lists(_paths, min_size=1, max_size=4, unique=True))
    paths = [path for path in paths if _settable(document, path)]
    if not _prefix_free(paths):
        paths = paths[:1]
    assume(paths)
    removed = [path for path in paths if draw(st.booleans())]
    updated = {path: draw(_values) for path in paths if path not in removed}
    return document, updated, removed


def mongomock_result(
    document: dict[str, Any], updated: dict[str, Any], removed: list[str]
) -> dict[str, Any]:
    collection = mongomock.MongoClient().db.products
    collection.insert_one({"_id": 1, **copy.deepcopy(document)})
    update: dict[str, Any] = {}
    if updated:
        update["$set"] = copy.deepcopy(updated)
    if removed:
        update["$unset"] = dict.fromkeys(removed, "")
    collection.update_one({"_id": 1}, update)
    found = collection.find_one({"_id": 1})
    assert found is not None
    del found["_id"]
    return dict(found)


@settings(max_examples=150, deadline=None)
@given(case=updates())
def test_matches_set_and_unset_semantics(case):
    # GIVEN a pre-image and an update of dotted `$set` and `$unset` paths
    document, updated, removed = case
    original = copy.deepcopy(document)

    # WHEN its update description is applied to the pre-image
    after = apply_update_description(document, description(updated, removed))

    # THEN the result is what the update makes of the document, which is left untouched
    assert after == mongomock_result(document, updated, removed)
    assert document == original


def test_array_elements_are_set_padded_and_unset_as_mongodb_does():
    document = {"tallas": [1, 2, 3], "otros": [0]}
    updated = {"tallas.1": 20, "otros.2": 5}

    after = apply_update_description(document, description(updated, ["tallas.0"]))

    assert after == {"tallas": [None, 20, 3], "otros": [0, None, 5]}
    assert after["otros"] == mongomock_result(document, updated, [])["otros"]


def test_truncated_arrays_are_cut_before_fields_are_set():
    document = {"historial": [1, 2, 3, 4], "cantidad": 9}
    changes = description(
        {"historial.1": 7}, truncatedArrays=[{"field": "historial", "newSize": 2}]
    )

    assert apply_update_description(document, changes) == {"historial": [1, 7], "cantidad": 9}


def test_disambiguated_paths_name_fields_with_dots_and_numeric_names():
    document = {"a.b": {"0": 1}, "x": [5, 6]}
    changes = description(
        {"a.b.0": 2, "x.1": 9},
        disambiguatedPaths={"a.b.0": ["a.b", "0"], "x.1": ["x", 1]},
    )

    assert apply_update_description(document, changes) == {"a.b": {"0": 2}, "x": [5, 9]}


def test_a_path_through_a_plain_value_is_a_contract_error():
    with pytest.raises(ContractError, match=re.escape("`cantidad.total` crosses a int value")):
        apply_update_description({"cantidad": 4}, description({"cantidad.total": 3}))
    with pytest.raises(ContractError, match="truncated array `tallas` is not an array"):
        apply_update_description(
            {"tallas": 3}, description(truncatedArrays=[{"field": "tallas", "newSize": 0}])
        )


@pytest.mark.parametrize(
    ("name", "quantity"),
    [
        ("insert-low-stock", 4),
        ("replace", 6),
        ("update-low-stock", 8),
        ("update-out-of-stock", 0),
        ("update-restock", 40),
    ],
)
def test_document_after_shows_the_change_itself(name, quantity):
    # GIVEN a sample whose looked-up document claims a later state
    event = read_event(name)
    if event["detail"]["operationType"] == "update":
        event["detail"]["fullDocument"]["cantidad"] = 1234

    # WHEN the document as of the change is asked for
    after = decode_event(event).detail.document_after()

    # THEN it is the change's own (insert/replace: fullDocument; update: pre-image + update)
    assert after is not None
    assert after["cantidad"] == quantity


@pytest.mark.parametrize("name", ["update-low-stock-no-pre-image", "delete", "drop"])
def test_document_after_is_none_when_the_event_does_not_show_it(name):
    assert decode_event(read_event(name)).detail.document_after() is None


def test_document_after_names_the_event_when_pre_image_and_update_disagree():
    event = read_event("update-low-stock")
    event["detail"]["updateDescription"]["updatedFields"] = {"cantidad.total": 3}

    with pytest.raises(ContractError, match=event["detail"]["eventId"]):
        decode_event(event).detail.document_after()

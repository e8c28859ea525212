"""Hypothesis strategies shared by the contract's property tests."""

from typing import Any

from hypothesis import strategies as st


def documents_of(
    keys: st.SearchStrategy[str], values: st.SearchStrategy[Any], *, max_list: int = 4
) -> st.SearchStrategy[Any]:
    """Documents of `values` under `keys`, nested through documents and lists a few levels."""
    return st.recursive(
        st.dictionaries(keys, values, max_size=5),
        lambda children: st.dictionaries(
            keys,
            st.one_of(values, children, st.lists(st.one_of(values, children), max_size=max_list)),
            max_size=5,
        ),
        max_leaves=20,
    )

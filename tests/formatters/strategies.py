"""Hypothesis strategies for the formatter tests: JSON values, and answers shaped like the real ones."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Any JSON scalar (floats finite, so that ``orjson.dumps`` accepts them).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)

#: Any JSON value, nested a few levels deep.
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

_keys_seen = st.sampled_from(
    [
        "0",
        "generated_text",
        "choices",
        "text",
        "message",
        "delta",
        "content",
        "role",
        "tool_calls",
        "function",
        "name",
        "arguments",
        "id",
        "index",
        "finish_reason",
        "usage",
        "output",
        "error",
        "model",
        "logprobs",
    ]
)

#: JSON values built from the keys the formatters look for, so the parsers' deeper branches are reached.
shaped_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys_seen, children, max_size=5),
    max_leaves=25,
)

#: Text that goes into prompts: quotes, backslashes, control characters and non-ASCII included.
prompt_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from(['"', "\\", "\n", "\t", "\r", "\b", "\f"]),
    max_size=40,
)

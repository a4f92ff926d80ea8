"""Pure logic of the routers' patch plumbing: what the server would store, so a planner's
patch that changes nothing stored is never sent (no writes at rest)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from canaryctl.routers._patch import apply_ops, canonical, list_ops, normalize, stored_unchanged

ROUTE = {
    "name": "main",
    "route": [{"destination": {"host": "app", "subset": "v1"}, "weight": 100}],
    "mirror": {"host": "app", "subset": "v2"},
    "mirrorPercentage": {"value": 20},
}


def test_integral_floats_compare_as_the_server_stores_them() -> None:
    assert normalize({"a": [20.0, 2.5, True, None, "20.0"]}) == {"a": [20, 2.5, True, None, "20.0"]}
    assert canonical({"value": 20.0}) == canonical({"value": 20})
    assert canonical({"value": 20.5}) != canonical({"value": 20})


def test_a_mirror_percentage_written_as_float_is_no_change() -> None:
    """The known write at rest: 20.0 written, 20 read back, a replace every tick."""
    obj = {"metadata": {"resourceVersion": "7"}, "spec": {"http": [ROUTE]}}
    ours = {**ROUTE, "mirrorPercentage": {"value": 20.0}}
    assert list_ops(("spec", "http"), [ROUTE], [ours]) == []
    replace = [{"op": "replace", "path": "/spec/http/0", "value": ours}]
    assert stored_unchanged(obj, replace)
    changed = {**ROUTE, "mirrorPercentage": {"value": 25.0}}
    assert not stored_unchanged(obj, [{"op": "replace", "path": "/spec/http/0", "value": changed}])


def test_apply_ops_follows_json_patch_on_maps_and_lists() -> None:
    obj = {"metadata": {"annotations": {"a/b": "1"}}, "spec": {"l": [1, 2, 3]}}
    ops = [
        {"op": "remove", "path": "/metadata/annotations/a~1b"},
        {"op": "add", "path": "/metadata/annotations/c~0d", "value": "2"},
        {"op": "add", "path": "/spec/l/1", "value": 9},
        {"op": "replace", "path": "/spec/l/0", "value": 0},
        {"op": "remove", "path": "/spec/l/3"},
        {"op": "add", "path": "/spec/l/-", "value": 4},
    ]
    assert apply_ops(obj, ops) == {
        "metadata": {"annotations": {"c~d": "2"}},
        "spec": {"l": [0, 9, 2, 4]},
    }
    assert obj["spec"]["l"] == [1, 2, 3], "the object read is not modified"


def test_a_patch_that_does_not_fit_the_object_is_left_to_the_server() -> None:
    assert not stored_unchanged({"spec": {}}, [{"op": "remove", "path": "/spec/missing"}])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.lists(json_values, max_size=6), st.lists(json_values, max_size=6))
def test_list_ops_turn_the_old_list_into_the_new_one(old: list[Any], new: list[Any]) -> None:
    obj = {"spec": {"items": old}}
    after = apply_ops(obj, list_ops(("spec", "items"), old, new))
    assert canonical(after["spec"]["items"]) == canonical(new)
    assert stored_unchanged(obj, list_ops(("spec", "items"), old, new)) == (
        canonical(old) == canonical(new)
    )

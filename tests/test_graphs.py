"""adp.graphs: a reduction that per-partition tasks depend on, in one graph layer."""

from __future__ import annotations

import dask
import pytest

from adp.graphs import flat_delayed


def test_a_reduction_becomes_one_layer_with_the_same_key_and_value() -> None:
    parts = [dask.delayed(lambda i: i * i)(i) for i in range(20)]
    total = dask.delayed(sum)(parts)
    flat = flat_delayed(total)
    assert len(total.__dask_graph__().layers) == 21
    assert len(flat.__dask_graph__()) == 21 and flat.key == total.key
    assert flat.compute(scheduler="sync") == total.compute(scheduler="sync") == 2470
    # a dependent task carries the flat layer, not the 21 it was built from
    dependent = dask.delayed(lambda x, t: x + t)(1, flat)
    assert len(dependent.__dask_graph__().layers) == 2
    assert dependent.compute(scheduler="sync") == 2471


def test_other_values_pass_through() -> None:
    marker = object()
    assert flat_delayed(marker) is marker
    assert flat_delayed(3.5) == 3.5


def test_tree_reduce_combines_every_item_whatever_the_fan_in() -> None:
    from adp.graphs import tree_reduce

    items = [dask.delayed(int)(i) for i in range(100)]
    for split_every in (2, 8, 16, 200):
        total = tree_reduce(items, sum, split_every=split_every)
        assert total.compute(scheduler="sync") == 4950
    assert tree_reduce([7], sum).compute(scheduler="sync") == 7  # a value is wrapped
    with pytest.raises(ValueError, match="at least 2"):
        tree_reduce(items, sum, split_every=1)

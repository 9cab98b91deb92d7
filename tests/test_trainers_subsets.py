"""Nested subsets: smaller N inside larger N, stable as the pool grows, clear errors."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from trainers.subsets import SubsetError, order_by_hash, select_subset, subset_hash


@dataclass(frozen=True)
class Item:
    id: str


def pool(size: int, offset: int = 0) -> list[Item]:
    return [Item(f"ex-{i}") for i in range(offset, offset + size)]


@pytest.mark.parametrize("seed", [0, 1, 17, 12345])
@pytest.mark.parametrize("size", [1, 10, 257, 2000])
def test_smaller_scales_are_contained_in_larger_ones(seed, size):
    items = pool(size)
    scales = sorted({0, 1, size // 7, size // 3, size // 2, size})
    subsets = [select_subset(items, n, seed) for n in scales]
    for n, subset in zip(scales, subsets, strict=True):
        assert len(subset) == n
        assert len({x.id for x in subset}) == n
    for smaller, larger in zip(subsets, subsets[1:], strict=False):
        assert set(smaller) <= set(larger)
        assert larger[: len(smaller)] == smaller  # a prefix, not just a subset


@pytest.mark.parametrize("seed", [0, 3, 99])
def test_growing_the_pool_keeps_chosen_examples_unless_displaced(seed):
    base, grown = pool(500), pool(500) + pool(300, offset=500)
    for n in (10, 100, 400):
        before = select_subset(base, n, seed)
        after = select_subset(grown, n, seed)
        new_ids = {x.id for x in after} - {x.id for x in before}
        # every change is a *new* row outranking an old one; old rows keep their relative order
        assert all(int(i.split("-")[1]) >= 500 for i in new_ids)
        kept = [x for x in after if int(x.id.split("-")[1]) < 500]
        assert kept == before[: len(kept)]


def test_order_does_not_depend_on_input_order_or_differs_by_seed():
    items = pool(300)
    shuffled = items[:]
    random.Random(5).shuffle(shuffled)
    assert order_by_hash(items, 7) == order_by_hash(shuffled, 7)
    assert order_by_hash(items, 7) != order_by_hash(items, 8)


def test_scale_larger_than_pool_is_a_clear_error():
    with pytest.raises(SubsetError, match=r"N=11 is larger than the gsm8k pool, which has 10"):
        select_subset(pool(10), 11, 0, pool_name="gsm8k pool")
    with pytest.raises(SubsetError, match="negative"):
        select_subset(pool(10), -1, 0)


def test_subset_hash_depends_on_ids_and_order():
    assert subset_hash(["a", "b"]) == subset_hash(["a", "b"])
    assert subset_hash(["a", "b"]) != subset_hash(["b", "a"])
    assert subset_hash(["ab"]) != subset_hash(["a", "b"])

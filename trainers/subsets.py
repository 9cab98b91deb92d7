"""Nested, stable training subsets.

Every example is ranked by `sha256(f"{seed}:{example_id}")` and a scale N takes the N best-ranked
examples. So, for one seed:

* the subset of a smaller N is contained in the subset of every larger N (nested), and
* adding rows to the pool never reshuffles the examples already chosen: a new row either ranks
  among the first N (and replaces the last one) or it does not — unlike a seeded permutation,
  which changes completely when the pool grows by one row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar


class HasId(Protocol):
    id: str


T = TypeVar("T", bound=HasId)


class SubsetError(ValueError):
    """Raised when a requested scale cannot be drawn from the pool."""


def rank_key(seed: int, example_id: str) -> str:
    return hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()


def order_by_hash(examples: Iterable[T], seed: int) -> list[T]:
    """The pool in subset order for `seed` (ties broken by id, so the order is total)."""
    return sorted(examples, key=lambda ex: (rank_key(seed, ex.id), ex.id))


def select_subset(pool: Sequence[T], n: int, seed: int, *, pool_name: str = "pool") -> list[T]:
    """The first `n` examples of `pool` in hash order; N larger than the pool is an error."""
    if n < 0:
        raise SubsetError(f"scale N={n} is negative; scales must be >= 0")
    if n > len(pool):
        raise SubsetError(
            f"scale N={n} is larger than the {pool_name}, which has {len(pool)} examples; "
            f"use scales <= {len(pool)} or a larger data source"
        )
    return order_by_hash(pool, seed)[:n]


def subset_hash(ids: Iterable[str]) -> str:
    """A fingerprint of the chosen example ids, in training-subset order."""
    digest = hashlib.sha256()
    for example_id in ids:
        digest.update(example_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()

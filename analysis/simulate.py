"""Simulated studies with a known law, in memory: for calibration tests, benchmarks and planning.

One study is one curve: at each N > 0, `n_seeds` training seeds, each seed's true accuracy the
law's value moved by seed noise on the logit scale (`seed_sd` logits, independent across N and
seeds), each of `n_items` evaluation items a Bernoulli draw at that accuracy. N = 0 (the base
model) has one checkpoint and no seed noise. The same Curve objects as a real run dir gives
(analysis/curves.py), so the whole fitting and bootstrap path is exercised, without files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from analysis.curves import Curve
from analysis.results import ItemScores


@dataclass(frozen=True)
class Setting:
    """A simulated design: true accuracies per N, items, seeds, seed noise (logits)."""

    scales: tuple[float, ...]  # N values, 0 = base model
    accuracy: tuple[float, ...]  # true accuracy at each N
    n_items: int = 1319
    n_seeds: int = 1
    seed_sd: float = 0.0

    def __post_init__(self) -> None:
        if len(self.scales) != len(self.accuracy):
            raise ValueError(
                f"{len(self.scales)} scales but {len(self.accuracy)} accuracies; give one each"
            )
        if not all(0.0 < a < 1.0 for a in self.accuracy):
            raise ValueError(f"accuracies must lie strictly between 0 and 1: {self.accuracy}")


def power_setting(prefactor: float, exponent: float, scales: Sequence[float], **kw) -> Setting:
    """A setting whose truth is the paper's law P = prefactor * N**exponent (N = 0: the N = 1
    value, a stand-in for the base model that no fit uses)."""
    acc = tuple(prefactor * max(float(n), 1.0) ** exponent for n in scales)
    return Setting(tuple(float(n) for n in scales), acc, **kw)


def _point(rng: np.random.Generator, p_true: float, seeds: int, sd: float, n_items: int):
    p = expit(logit(p_true) + sd * rng.standard_normal(seeds)) if sd > 0 else np.full(seeds, p_true)
    x = (rng.random((seeds, n_items)) < p[:, None]).astype(float)
    ids, ones = np.arange(n_items), np.ones(n_items)
    per_seed = [ItemScores(ids, row, ones) for row in x]
    values = x.mean(1)
    se = np.sqrt(values * (1 - values) / max(n_items - 1, 1))
    return per_seed, values, float(np.sqrt((se * se).sum()) / seeds)


def simulate_curve(rng: np.random.Generator, setting: Setting, label: str = "sim") -> Curve:
    """One simulated study of `setting` as a Curve."""
    per_point = []
    for n, p in zip(setting.scales, setting.accuracy, strict=True):
        trained = n > 0
        seeds = setting.n_seeds if trained else 1
        per_point.append(_point(rng, p, seeds, setting.seed_sd if trained else 0.0,
                                setting.n_items))  # fmt: skip
    items = [ItemScores(ps[0].doc_ids, np.mean([it.num for it in ps], 0), ps[0].den)
             for ps, _, _ in per_point]  # fmt: skip
    values = np.array([v.mean() for _, v, _ in per_point])
    key = {"experiment": "sim", "model": label, "task": "t", "eval_task": "e",
           "metric": "acc", "filter": "none"}  # fmt: skip
    return Curve(key, np.array(setting.scales, dtype=float), values,
                 np.array([se for _, _, se in per_point]), np.full(len(values), setting.n_items,
                 dtype=float), items, [], [v for _, v, _ in per_point],
                 [ps for ps, _, _ in per_point])  # fmt: skip

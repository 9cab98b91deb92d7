"""The Facts100 figure: readable condition labels, and intervals on every bar."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from scipy.stats import norm

from analysis import figures as fg
from analysis.facts100 import condition_text, facts100_figure, wilson, with_intervals
from analysis.labels import Labels


def _summary() -> pd.DataFrame:
    """Four conditions of the BM/PM x before/after design, as `summarise` returns them."""
    rows = []
    for model, post in (("BM", "none"), ("PM", "multihop_closedbook n1000")):
        for facts, d_ok, m_ok in (("none", 1, 0), ("facts100_documents n400", 15, 6)):
            counts = {"not_integrated": 20 - d_ok, "reasoning_failed": d_ok - m_ok, "correct": m_ok}
            rows.append({
                "experiment": "e", "base_model": "meta-llama/Meta-Llama-3-8B", "model": model,
                "post_training": post, "facts_training": facts,
                "stage": "before" if facts == "none" else "after",
                "condition": f"{model} ({post}), {'before' if facts == 'none' else 'after'}",
                "direct_em": d_ok / 20, "direct_n": 20, "multihop_em": m_ok / 20, "multihop_n": 20,
                **counts, **{f"{k}_frac": v / 20 for k, v in counts.items()},
            })  # fmt: skip
    return pd.DataFrame(rows)


def _wilson_by_hand(k: int, n: int, level: float) -> tuple[float, float]:
    z = norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def test_wilson_intervals_match_the_formula_and_stay_in_0_1():
    lo, hi = wilson(np.array([5.0, 0.0, 20.0, 3.0]), np.array([20.0, 20.0, 20.0, 0.0]), 0.9)
    for i, k in enumerate((5, 0, 20)):
        assert (lo[i], hi[i]) == pytest.approx(_wilson_by_hand(k, 20, 0.9))
    assert lo[1] == pytest.approx(0.0, abs=1e-12) and hi[2] == pytest.approx(1.0)
    assert np.isnan(lo[3]) and np.isnan(hi[3])  # no questions: no interval


def test_condition_labels_are_readable():
    labels = Labels.defaults()
    texts = [condition_text(r, labels) for r in _summary().itertuples()]
    assert texts == [
        "base model\nbefore Facts100",
        "base model\nafter Facts100 documents, N = 400",
        "post-trained (HotpotQA closed-book, N = 1k)\nbefore Facts100",
        "post-trained (HotpotQA closed-book, N = 1k)\nafter Facts100 documents, N = 400",
    ]
    r = next(_summary().itertuples())
    assert condition_text(r, labels, with_base=True).startswith("base model [Meta-Llama-3 8B]")


def _bars(ax) -> dict[str, tuple[list[float], list[tuple[float, float]]]]:
    """Each bar series of a horizontal bar chart: widths, and its error bar's (lo, hi) ends."""
    out = {}
    for container in [c for c in ax.containers if isinstance(c, BarContainer)]:
        widths = [p.get_width() for p in container.patches]
        (segments,) = container.errorbar.lines[2]
        ends = [tuple(sorted((seg[0][0], seg[1][0]))) for seg in segments.get_segments()]
        out[container.get_label()] = (widths, ends)
    return out


def test_figure_has_intervals_on_every_bar_and_no_raw_identifiers():
    summary = with_intervals(_summary(), 0.9)
    with fg.paper_style():
        fig = facts100_figure(summary, Labels.defaults())
    ax1, ax2 = fig.axes
    ticks = [t.get_text() for t in ax1.get_yticklabels()]
    assert ticks[0] == "base model\nbefore Facts100"
    assert not any("PM (" in t or "_" in t for t in ticks)  # the old `PM (multihop n1000), after`
    direct_widths, direct_ends = _bars(ax1)["direct questions"]
    assert direct_widths == pytest.approx(summary["direct_em"].tolist())
    for (lo, hi), k in zip(direct_ends, (1, 15, 1, 15), strict=True):
        assert (lo, hi) == pytest.approx(_wilson_by_hand(k, 20, 0.9))
    cats = _bars(ax2)
    assert list(cats) == ["correct", "fact known, not combined", "fact not learned"]
    lo, hi = cats["fact not learned"][1][1]
    assert (lo, hi) == pytest.approx(_wilson_by_hand(5, 20, 0.9))
    assert "90% Wilson intervals" in fig.get_supxlabel()
    assert fg.text_overlaps(fig) == [] and fg.text_outside(fig) == []
    plt.close(fig)


def test_figure_computes_intervals_when_the_summary_has_none():
    with fg.paper_style():
        fig = facts100_figure(_summary(), level=0.95)
    widths, ends = _bars(fig.axes[0])["multihop questions"]
    assert ends[1] == pytest.approx(_wilson_by_hand(6, 20, 0.95))
    plt.close(fig)

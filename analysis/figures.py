"""The study's figures, in one consistent, greyscale-readable style (matplotlib, Agg backend).

Every builder returns a `Figure` (so tests can inspect axes, series and labels) and `save`
writes it as PNG and PDF atomically. Each model keeps one colour, marker and line style across
all figures; markers and line styles alone tell series apart when printed in grey.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import transforms  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from analysis.atomic import write_atomic  # noqa: E402
from analysis.bootstrap import CurveFit, interval  # noqa: E402
from analysis.errors import CATEGORIES  # noqa: E402

# Okabe-Ito (colour-blind safe), darkest first; yellow last because it vanishes on white
COLOURS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1)))
REFERENCE_STYLE = "-."  # reference models (sah-eval sweep --models)
BASELINE_STYLE = ":"  # reserved for the N = 0 baseline
EXCLUDED_COLOUR = "0.55"  # hollow grey markers: points not in the fit (e.g. score 0 in log-log)
EXCLUDED_GID = "excluded"
HATCHES = ("///", "...", "xxx", "")
GREYS = ("0.25", "0.55", "0.8", "1.0")
FORMATS = ("png", "pdf")

STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.9",
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.5,
    "errorbar.capsize": 2,
    "pdf.fonttype": 42,  # embed TrueType, so text stays editable and searchable
    "savefig.dpi": 200,
    "figure.constrained_layout.use": True,
}


@contextmanager
def paper_style() -> Iterator[None]:
    with plt.rc_context(STYLE):
        yield


@dataclass(frozen=True)
class SeriesStyle:
    colour: str
    marker: str
    linestyle: object


def _natural(value: object) -> tuple[int, float, str]:
    """Numbers in numeric order (N = 500 before N = 1000), then text."""
    try:
        return (0, float(value), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def series_styles(names: Sequence[object]) -> dict[object, SeriesStyle]:
    """A fixed style per name (sorted), so one model looks the same in every figure."""
    ordered = sorted(set(names), key=_natural)
    return {
        name: SeriesStyle(
            COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)], LINESTYLES[i % len(LINESTYLES)]
        )  # fmt: skip
        for i, name in enumerate(ordered)
    }


def _count_label(value: float, _pos: object = None) -> str:
    if value >= 1000 and value % 1000 == 0:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _log_x(ax: plt.Axes, label: str, values: Sequence[float] = ()) -> None:
    """Log x axis labelled at the measured values when they are few and well apart (so the
    labels cannot collide), else at powers of ten."""
    ax.set_xscale("log")
    xs = np.unique(np.asarray([v for v in values if v > 0], dtype=float))
    if 0 < len(xs) <= 8 and (len(xs) == 1 or np.min(xs[1:] / xs[:-1]) >= 1.6):
        ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(_count_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def _legend_outside(ax: plt.Axes, handles: list | None = None) -> None:
    kwargs = {"handles": handles} if handles is not None else {}
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0.0, **kwargs
    )


def _yerr(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    err = np.vstack([values - lo, hi - values])
    return None if np.all(np.isnan(err)) else np.clip(np.nan_to_num(err), 0.0, None)


def _fmt_ci(value: float, lo: float, hi: float) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return f"{value:.3f} [n/a]"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def _draw_power_law(ax: plt.Axes, cf: CurveFit, st: SeriesStyle) -> str:
    """The fitted law with its band, only over the N range it was fitted on; the legend text."""
    assert cf.power is not None and cf.power_boot is not None
    fitted = cf.curve.x[cf.power_mask]
    xs = np.geomspace(fitted.min(), fitted.max(), 120)
    if np.isfinite(cf.power_boot.slope).any():
        band = np.nanpercentile(
            cf.power_boot.predict(xs), [50 * (1 - cf.level), 50 * (1 + cf.level)], axis=0
        )
        ax.fill_between(xs, band[0], band[1], color=st.colour, alpha=0.12, linewidth=0)
    ax.plot(xs, cf.power.predict(xs)[0], color=st.colour, linestyle=st.linestyle)
    s_lo, s_hi = interval(cf.power_boot.slope, cf.level)
    return f"1/b = {_fmt_ci(cf.power.slope[0], s_lo, s_hi)}"


def _draw_points(ax: plt.Axes, cf: CurveFit, st: SeriesStyle) -> bool:
    """Fitted points with their intervals; points not in the fit as hollow grey markers.
    Returns whether any point was left out (scores that are not numbers cannot be drawn)."""
    c = cf.curve
    fitted = cf.power_mask if cf.power is not None else np.zeros(len(c.x), bool)
    lo, hi = np.array([interval(cf.boot[:, k], cf.level) for k in range(len(c.x))]).T
    ax.errorbar(c.x[fitted], c.value[fitted], yerr=_yerr(c.value[fitted], lo[fitted], hi[fitted]),
                color=st.colour, marker=st.marker, linestyle="none")  # fmt: skip
    left_out = cf.fit_mask & ~fitted
    if left_out.any():
        ax.plot(c.x[left_out], c.value[left_out], marker=st.marker, linestyle="none",
                color=EXCLUDED_COLOUR, markerfacecolor="white", gid=EXCLUDED_GID)  # fmt: skip
    return bool(left_out.any())


def scaling_figure(
    fits: list[CurveFit],
    title: str,
    ylabel: str,
    series: dict[str, str],
    references: Sequence[tuple[str, float]] = (),
) -> Figure:
    """Fig. 1: score vs N (log x), one series per model: points with intervals, fitted power law
    (with its interval band, drawn only over the N it was fitted on; points left out of the fit
    are hollow grey markers), and the N = 0 baseline as a dotted line with a hollow marker on
    the left axis. `series` maps each fit's curve label to its legend name; `references`
    (name, score) are drawn as grey dash-dot lines (hub baselines, Trainer checkpoints)."""
    styles = series_styles(list(series.values()))
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    handles: list[Line2D] = []
    to_spine = transforms.blended_transform_factory(ax.transAxes, ax.transData)
    any_left_out = False
    for cf in fits:
        name = series[cf.curve.label]
        st = styles[name]
        label = f"{name}: no power-law fit"
        if cf.power is not None and cf.power_boot is not None:
            label = f"{name}: {_draw_power_law(ax, cf, st)}"
        any_left_out |= _draw_points(ax, cf, st)
        handles.append(Line2D([], [], color=st.colour, marker=st.marker, linestyle=st.linestyle,
                              label=label))  # fmt: skip
        if not math.isnan(cf.baseline):
            ax.axhline(cf.baseline, color=st.colour, linestyle=BASELINE_STYLE, linewidth=0.9)
            ax.plot([0.0], [cf.baseline], transform=to_spine, marker=st.marker, color=st.colour,
                    markerfacecolor="white", clip_on=False, linestyle="none")  # fmt: skip
    greys = np.linspace(0.15, 0.6, max(len(references), 1))
    for (name, value), grey in zip(references, greys, strict=False):
        ax.axhline(value, color=str(grey), linestyle=REFERENCE_STYLE, linewidth=1.0)
        handles.append(Line2D([], [], color=str(grey), linestyle=REFERENCE_STYLE,
                              label=f"{name} (reference)"))  # fmt: skip
    _log_x(ax, "fine-tuning examples N (log scale)", [x for cf in fits for x in cf.curve.x])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if any_left_out:
        handles.append(Line2D([], [], color=EXCLUDED_COLOUR, marker="o", linestyle="none",
                              markerfacecolor="white", label="not in the fit (e.g. score 0)"))  # fmt: skip
    handles.append(Line2D([], [], color="0.4", linestyle=BASELINE_STYLE, marker="o",
                          markerfacecolor="white", label="N = 0 (base model)"))  # fmt: skip
    _legend_outside(ax, handles)
    return fig


def _series_figure(
    points: pd.DataFrame, x: str, series: str, xlabel: str, ylabel: str, title: str,
    series_label: str, baseline_key: object = None,
) -> Figure:  # fmt: skip
    """Score vs a log x, one series per value of `series`, points with interval bars."""
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    styles = series_styles(list(points[series].unique()))
    groups = list(points.sort_values(x).groupby(series, sort=True))
    for i, (key, rows) in enumerate(groups):
        st = styles[key]
        v = rows["value"].to_numpy(float)
        # dodge series sideways by a few percent so interval bars at one x do not hide each other
        dodge = 1.04 ** (i - (len(groups) - 1) / 2)
        base = key == baseline_key  # the N = 0 series keeps the baseline look of Fig. 1
        ax.errorbar(rows[x].to_numpy(float) * dodge, v, yerr=_yerr(v, rows["lo"].to_numpy(float),
                    rows["hi"].to_numpy(float)), color=st.colour, marker=st.marker,
                    linestyle=BASELINE_STYLE if base else st.linestyle,
                    markerfacecolor="white" if base else st.colour,
                    label=series_label.format(key) + (" (base model)" if base else ""))  # fmt: skip
    _log_x(ax, xlabel, points[x].to_numpy(float))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_outside(ax)
    return fig


def size_figure(points: pd.DataFrame, title: str, ylabel: str) -> Figure:
    """Fig. 2: score vs model size within a family, one series per N."""
    pts = points.assign(n_label=points["n"].astype(int))
    return _series_figure(pts, "size_b", "n_label", "model size (billions of parameters, log scale)",
                          ylabel, title, "N = {}", baseline_key=0)  # fmt: skip


def budget_figure(points: pd.DataFrame, title: str, ylabel: str) -> Figure:
    """Score vs total budget B (SFT on r*B, then DPO on (1-r)*B), one series per r."""
    return _series_figure(points, "budget", "sft_fraction", "total example budget B (log scale)",
                          ylabel, title, "SFT fraction r = {:g}")  # fmt: skip


def errors_figure(counts: pd.DataFrame, title: str) -> Figure:
    """Fig. 3: error-category counts vs N as grouped bars (hatched, so greyscale works)."""
    counts = counts.sort_values("n")
    judged = bool(counts["judged"].any())
    cats = [c for c in CATEGORIES if judged or c != "reasoning"]
    fig, ax = plt.subplots(figsize=(4.8, 2.8))
    pos = np.arange(len(counts))
    width = 0.8 / len(cats)
    for i, cat in enumerate(cats):
        label = "other (not judged)" if cat == "other" and not judged else cat
        ax.bar(pos + (i - (len(cats) - 1) / 2) * width, counts[cat].to_numpy(), width,
               color=GREYS[i % len(GREYS)], edgecolor="black", linewidth=0.6,
               hatch=HATCHES[i % len(HATCHES)], label=label)  # fmt: skip
    ax.set_xticks(pos, [_count_label(float(n)) for n in counts["n"]])
    ax.set_xlabel("fine-tuning examples N")
    ax.set_ylabel("wrong responses in category")
    ax.set_title(title)
    ax.grid(axis="x", visible=False)
    _legend_outside(ax)
    return fig


def slug(*parts: object) -> str:
    return "_".join(
        re.sub(r"[^\w.-]+", "-", str(p)).strip("-") for p in parts if p not in (None, "")
    )


def save(fig: Figure, folder: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `folder/stem.<fmt>` for each format (atomically) and close the figure."""
    out = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        # no creation date in the PDF/PNG, so re-running gives byte-identical files
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        # constrained layout already makes room for the outside legend: no bbox_inches="tight"
        out.append(
            write_atomic(path, lambda tmp, f=fmt, m=meta: fig.savefig(tmp, format=f, metadata=m))
        )
    plt.close(fig)
    return out


def _drawn_texts(fig: Figure) -> list[matplotlib.text.Text]:
    """Texts that are actually drawn: tick labels only for ticks inside the view limits."""
    tick_labels = set()
    drawn = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                tick_labels.update((tick.label1, tick.label2))
                if lo <= tick.get_loc() <= hi:
                    drawn += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    for text in fig.findobj(matplotlib.text.Text):
        if text not in tick_labels and text.get_visible():
            drawn.append(text)
    return [t for t in drawn if t.get_text().strip()]


def text_overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose rendered boxes overlap (labels, tick labels, legend, titles)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [
        (t.get_text(), t.get_window_extent(renderer).shrunk(0.98, 0.9)) for t in _drawn_texts(fig)
    ]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]

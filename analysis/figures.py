"""The study's figures, in one consistent, greyscale-readable style (matplotlib, Agg backend).

Every builder returns a `Figure` (so tests can inspect axes, series and labels) and `save`
writes it as PNG and PDF atomically. Each model keeps one colour, marker and line style across
all figures; markers and line styles alone tell series apart when printed in grey. The look
comes from `sah.mplstyle` beside this file; a user style file is applied on top of it
(`paper_style(path)`). Builders take display text (see analysis/labels.py), not identifiers.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import transforms  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator  # noqa: E402

from analysis.atomic import write_atomic  # noqa: E402
from analysis.bootstrap import CurveFit, interval  # noqa: E402
from analysis.labels import Labels  # noqa: E402
from analysis.tables import NOT_JUDGED  # noqa: E402

# Okabe-Ito (colour-blind safe), darkest first; yellow last because it vanishes on white
COLOURS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1)))
REFERENCE_STYLE = "-."  # reference models (sah-eval sweep --models)
BASELINE_STYLE = ":"  # reserved for the N = 0 baseline
EXCLUDED_COLOUR = "0.55"  # hollow grey markers: points not in the fit (e.g. score 0 in log-log)
EXCLUDED_GID = "excluded"
NOT_JUDGED_GID = "not-judged"
BAND_ALPHA = 0.15
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "ooo")
GREYS = ("0.15", "0.45", "0.7", "0.9", "1.0", "0.6")
FORMATS = ("png", "pdf")
STYLE_FILE = Path(__file__).with_name("sah.mplstyle")
ERROR_GROUPS = ("total", "format", "arithmetic", "reasoning", "other")
OVERLAP_NOTE = ("Categories overlap: one wrong response can be in several, "
                "so they can add up to more than the total.")  # fmt: skip


class FigureStyleError(ValueError):
    """A user style file that cannot be used."""


@contextmanager
def paper_style(user_style: Path | str | None = None) -> Iterator[None]:
    """The study's rc settings (sah.mplstyle), then `user_style` (a .mplstyle file) on top."""
    styles: list[str | Path] = [STYLE_FILE]
    if user_style is not None:
        path = Path(user_style)
        if not path.is_file():
            raise FigureStyleError(f"style file {path} does not exist; expected a matplotlib "
                                   f".mplstyle file (lines like `font.size: 9`)")  # fmt: skip
        try:  # matplotlib itself would only log a bad value and go on without it
            matplotlib.rc_params_from_file(path, fail_on_error=True, use_default_template=False)
        except (UnicodeDecodeError, ValueError, OSError) as e:
            raise FigureStyleError(f"style file {path}: {e} (expected a UTF-8 matplotlib "
                                   f".mplstyle file, lines like `font.size: 9`)") from None  # fmt: skip
        styles.append(path)
    with plt.style.context(styles):
        yield


@dataclass(frozen=True)
class SeriesStyle:
    colour: str
    marker: str
    linestyle: object

    def handle(self, label: str, **kwargs: object) -> Line2D:
        props = {"color": self.colour, "marker": self.marker, "linestyle": self.linestyle}
        return Line2D([], [], label=label, **{**props, **kwargs})


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


def count_label(value: float, _pos: object = None) -> str:
    """`500`, `1k`, `10k`: N and budgets as the paper writes them."""
    if value >= 1000 and value % 1000 == 0:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _size_label(value: float, _pos: object = None) -> str:
    """Billions of parameters as model names write them: 0.5B, 410M, 7B, 70B."""
    if 0 < value < 1 and abs(value * 10 - round(value * 10)) > 1e-9:
        return f"{value * 1000:.0f}M"
    return f"{value:g}B"


def _log_x(ax: plt.Axes, label: str, values: Sequence[float] = (), fmt=count_label) -> None:
    """Log x axis labelled at the measured values when they are few and well apart (so the
    labels cannot collide), else at powers of ten."""
    ax.set_xscale("log")
    xs = np.unique(np.asarray([v for v in values if v > 0], dtype=float))
    if 0 < len(xs) <= 8 and (len(xs) == 1 or np.min(xs[1:] / xs[:-1]) >= 1.6):
        ax.xaxis.set_major_locator(FixedLocator(xs))
        # the measured values are labelled: unlabelled minor ticks add nothing to read but
        # cost a fifth of the drawing time
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def _legend_outside(ax: plt.Axes, handles: list | None = None) -> None:
    kwargs = {"handles": handles} if handles is not None else {}
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0.0, **kwargs
    )


def _grid(n_panels: int, panel_w: float, panel_h: float, max_cols: int = 3,
          min_width: float = 0.0, **kwargs):  # fmt: skip
    """A figure with `n_panels` axes in rows of at most `max_cols`; unused cells removed."""
    ncols = min(max_cols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    size = (max(min_width, panel_w * ncols), panel_h * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, **kwargs)
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        fig.delaxes(ax)
    for ax in flat[:n_panels]:
        ax.tick_params(labelbottom=True, labelleft=True)  # shared axes keep their tick labels
    return fig, flat[:n_panels]


def fit_label(text: str, length_in: float) -> str:
    """`text` wrapped onto lines that fit `length_in` inches (a y label longer than its panel is
    cut off at the figure's edge)."""
    size = matplotlib.font_manager.FontProperties(size=plt.rcParams["axes.labelsize"])
    chars = max(12, int(length_in * 72 / (0.55 * size.get_size_in_points())))
    return textwrap.fill(text, chars)


def _yerr(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    err = np.vstack([values - lo, hi - values])
    return None if np.all(np.isnan(err)) else np.clip(np.nan_to_num(err), 0.0, None)


def fmt_ci(value: float, lo: float, hi: float, digits: int = 3) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return f"{value:.{digits}f} [n/a]"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


# ------------------------------------------------------------------------------ Fig. 1
@dataclass
class ScalingPanel:
    """One panel of Fig. 1: the curves of one eval task, one per model.

    `series` maps each fit's curve label to the model's display name; `references` are
    (name, score) drawn as grey dash-dot lines (hub baselines, Trainer checkpoints)."""

    title: str
    ylabel: str
    fits: list[CurveFit]
    series: dict[str, str]
    references: Sequence[tuple[str, float]] = field(default_factory=list)


def _draw_power_law(ax: plt.Axes, cf: CurveFit, st: SeriesStyle, digits: int = 3) -> str:
    """The fitted law with its band, only over the N range it was fitted on; the 1/b text."""
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
    return fmt_ci(cf.power.slope[0], s_lo, s_hi, digits)


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


def _draw_baseline(ax: plt.Axes, value: float, st: SeriesStyle) -> None:
    """N = 0 cannot sit on a log axis: a dotted line and a hollow marker on the left spine."""
    to_spine = transforms.blended_transform_factory(ax.transAxes, ax.transData)
    ax.axhline(value, color=st.colour, linestyle=BASELINE_STYLE, linewidth=0.9)
    ax.plot([0.0], [value], transform=to_spine, marker=st.marker, color=st.colour,
            markerfacecolor="white", clip_on=False, linestyle="none")  # fmt: skip


@dataclass
class _PanelResult:
    handles: list[Line2D]  # one per model, labelled with its 1/b
    references: list[Line2D]
    any_left_out: bool


def _draw_scaling_panel(ax: plt.Axes, panel: ScalingPanel, styles: dict, digits: int,
                        named: bool) -> _PanelResult:  # fmt: skip
    handles, any_left_out = [], False
    for cf in panel.fits:
        name = panel.series[cf.curve.label]
        st = styles[name]
        text = "no power-law fit"
        if cf.power is not None and cf.power_boot is not None:
            text = _draw_power_law(ax, cf, st, digits)
            text = f"1/b = {text}" if named else text
        any_left_out |= _draw_points(ax, cf, st)
        handles.append(st.handle(f"{name}: {text}" if named else text))
        if not math.isnan(cf.baseline):
            _draw_baseline(ax, cf.baseline, st)
    refs = []
    greys = np.linspace(0.15, 0.6, max(len(panel.references), 1))
    for (name, value), grey in zip(panel.references, greys, strict=False):
        ax.axhline(value, color=str(grey), linestyle=REFERENCE_STYLE, linewidth=1.0)
        refs.append(Line2D([], [], color=str(grey), linestyle=REFERENCE_STYLE,
                           label=f"{name} (reference)"))  # fmt: skip
    _log_x(ax, "fine-tuning examples N (log scale)", [x for cf in panel.fits for x in cf.curve.x])
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title)
    return _PanelResult(handles, refs, any_left_out)


def _shared_handles(any_left_out: bool) -> list[Line2D]:
    handles = []
    if any_left_out:
        handles.append(Line2D([], [], color=EXCLUDED_COLOUR, marker="o", linestyle="none",
                              markerfacecolor="white", label="not in the fit (e.g. score 0)"))  # fmt: skip
    handles.append(Line2D([], [], color="0.4", linestyle=BASELINE_STYLE, marker="o",
                          markerfacecolor="white", label="N = 0 (base model)"))  # fmt: skip
    return handles


def scaling_figure(
    fits: list[CurveFit],
    title: str,
    ylabel: str,
    series: dict[str, str],
    references: Sequence[tuple[str, float]] = (),
) -> Figure:
    """One panel of Fig. 1 on its own: score vs N (log x), one series per model: points with
    intervals, fitted power law (with its interval band, drawn only over the N it was fitted
    on; points left out of the fit are hollow grey markers), and the N = 0 baseline as a
    dotted line with a hollow marker on the left axis; 1/b with its interval in the legend."""
    styles = series_styles(list(series.values()))
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    res = _draw_scaling_panel(ax, ScalingPanel(title, ylabel, fits, series, references), styles,
                              digits=3, named=True)  # fmt: skip
    _legend_outside(ax, res.handles + res.references + _shared_handles(res.any_left_out))
    return fig


def _marker_only(handle: Line2D) -> Line2D:
    return Line2D([], [], color=handle.get_color(), marker=handle.get_marker(), linestyle="none",
                  label=handle.get_label())  # fmt: skip


def scaling_grid(panels: Sequence[ScalingPanel], level: float = 0.90) -> Figure:
    """Fig. 1: one panel per eval task, one curve per model, one shared N axis. The models'
    legend is on top; each panel lists every model's fitted 1/b with its interval."""
    styles = series_styles([name for p in panels for name in p.series.values()])
    fig, axes = _grid(len(panels), 2.45, 2.9, sharex=True, min_width=4.9)
    any_left_out = False
    for ax, panel in zip(axes, panels, strict=True):
        res = _draw_scaling_panel(ax, panel, styles, digits=2, named=False)
        any_left_out |= res.any_left_out
        # below the panel, not inside it: a legend inside covers the curves it explains
        ax.legend(handles=[_marker_only(h) for h in res.handles] + res.references,
                  title=f"1/b [{level:.0%} interval]", loc="upper center",
                  bbox_to_anchor=(0.5, 0.0), borderaxespad=4.6, ncols=2, frameon=False,
                  fontsize="x-small", title_fontsize="x-small", handlelength=1.0,
                  columnspacing=0.8, handletextpad=0.4, labelspacing=0.25)  # fmt: skip
    order = list(dict.fromkeys(name for p in panels for name in p.series.values()))
    models = [styles[n].handle(n) for n in order]
    handles = models + _shared_handles(any_left_out)
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 4),
               frameon=False)  # fmt: skip
    return fig


# ------------------------------------------------------------------------------ Fig. 2, budget
def _band_series(ax: plt.Axes, rows: pd.DataFrame, x: str, st: SeriesStyle, label: str,
                 baseline: bool = False) -> None:  # fmt: skip
    """Points joined by a line at their true x, the interval as a translucent band (several
    series at one x stay readable without shifting any of them sideways)."""
    rows = rows.sort_values(x)
    xs, v = rows[x].to_numpy(float), rows["value"].to_numpy(float)
    lo, hi = rows["lo"].to_numpy(float), rows["hi"].to_numpy(float)
    if np.isfinite(lo).any() and np.isfinite(hi).any():
        ax.fill_between(xs, lo, hi, color=st.colour, alpha=BAND_ALPHA, linewidth=0)
    ax.plot(xs, v, color=st.colour, marker=st.marker, label=label,
            linestyle=BASELINE_STYLE if baseline else st.linestyle,
            markerfacecolor="white" if baseline else st.colour)  # fmt: skip


def _band_note(level: float | None) -> Patch:
    text = f"{level:.0%} interval" if level else "interval"
    return Patch(facecolor="0.5", alpha=BAND_ALPHA, label=f"shaded: {text}")


@dataclass
class BandPanel:
    """One panel of a score-vs-x grid (Fig. 2: x = model size, a curve per N; budget: x = B,
    a curve per SFT fraction r): `points` has the x column, the series column, value, lo, hi."""

    title: str
    ylabel: str
    points: pd.DataFrame


@dataclass(frozen=True)
class _BandKind:
    x: str
    series: str
    xlabel: str
    xfmt: object
    name: object  # series value -> legend text
    baseline: object = None  # the series value drawn as the N = 0 baseline


def _n_name(n: object) -> str:
    return f"N = {count_label(float(n))}" + (" (base model)" if n == 0 else "")


def _r_name(r: object) -> str:
    only = {0.0: " (DPO only)", 1.0: " (SFT only)"}.get(float(r), "")  # type: ignore[arg-type]
    return f"SFT fraction r = {float(r):g}{only}"  # type: ignore[arg-type]


SIZE = _BandKind("size_b", "n", "model size (parameters, log scale)", _size_label, _n_name, 0)
BUDGET = _BandKind("budget", "sft_fraction", "total example budget B (log scale)", count_label,
                   _r_name)  # fmt: skip


def _band_grid(panels: Sequence[BandPanel], kind: _BandKind, title: str,
               level: float | None) -> Figure:  # fmt: skip
    keys = sorted({k for p in panels for k in p.points[kind.series]}, key=_natural)
    styles = series_styles(keys)
    fig, axes = _grid(len(panels), 2.45, 2.2, sharex=True, min_width=4.9)
    for ax, panel in zip(axes, panels, strict=True):
        for key, rows in panel.points.groupby(kind.series, sort=True):
            _band_series(ax, rows, kind.x, styles[key], kind.name(key), key == kind.baseline)
        _log_x(ax, fit_label(kind.xlabel, 2.0), panel.points[kind.x].to_numpy(float), fmt=kind.xfmt)
        ax.set_ylabel(fit_label(panel.ylabel, 1.5))  # the axes part of a 2.2 in panel
        ax.set_title(panel.title)
    base = {"linestyle": BASELINE_STYLE, "markerfacecolor": "white"}
    handles = [styles[k].handle(kind.name(k), **(base if k == kind.baseline else {}))
               for k in keys] + [_band_note(level)]  # fmt: skip
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 4),
               frameon=False, title=title or None)  # fmt: skip
    return fig


def size_grid(panels: Sequence[BandPanel], title: str, level: float | None = None) -> Figure:
    """Fig. 2: score vs model size (log x) within one family, one panel per eval task and one
    curve per N (N = 0, the base models, dotted with hollow markers)."""
    panels = [replace(p, points=p.points.assign(n=p.points["n"].astype(int))) for p in panels]
    return _band_grid(panels, SIZE, title, level)


def budget_grid(panels: Sequence[BandPanel], title: str, level: float | None = None) -> Figure:
    """Score vs total budget B (SFT on r*B, then DPO on (1-r)*B), one panel per eval task and
    one curve per r, every point at its own B (no sideways shift: r = 0 and r = 1 at one B are
    one budget), intervals as bands."""
    return _band_grid(panels, BUDGET, title, level)


# ------------------------------------------------------------------------------ Fig. 3
def _error_values(counts: pd.DataFrame, group: str) -> np.ndarray:
    col = "incorrect" if group == "total" else group
    return pd.to_numeric(counts[col], errors="coerce").to_numpy(float)


def _draw_errors_panel(ax: plt.Axes, counts: pd.DataFrame, labels: Labels) -> bool:
    """Grouped bars per N: total mistakes, then each category; returns whether judged."""
    counts = counts.sort_values("n")
    judged = bool(counts["judged"].fillna(False).astype(bool).all())
    pos = np.arange(len(counts))
    width = 0.84 / len(ERROR_GROUPS)
    for i, group in enumerate(ERROR_GROUPS):
        offset = pos + (i - (len(ERROR_GROUPS) - 1) / 2) * width
        if group == "reasoning" and not judged:
            for x in offset:  # an empty slot would read as zero reasoning errors
                ax.text(x, 0.02, NOT_JUDGED, rotation=90, ha="center", va="bottom",
                        fontsize="xx-small", color="0.35", gid=NOT_JUDGED_GID,
                        transform=transforms.blended_transform_factory(ax.transData,
                                                                       ax.transAxes))  # fmt: skip
            continue
        ax.bar(offset, _error_values(counts, group), width, color=GREYS[i % len(GREYS)],
               edgecolor="black", linewidth=0.6, hatch=HATCHES[i % len(HATCHES)],
               label=_error_label(group, judged, labels))  # fmt: skip
    ax.set_xticks(pos, [count_label(float(n)) for n in counts["n"]])
    ax.set_xlabel("fine-tuning examples N")
    ax.grid(axis="x", visible=False)
    return judged


def _error_label(group: str, judged: bool, labels: Labels) -> str:
    if group == "other" and not judged:
        return f"{labels.category('other')} (incl. reasoning: not judged)"
    return labels.category(group)


def _error_handles(judged: bool, labels: Labels) -> list:
    handles = []
    for i, group in enumerate(ERROR_GROUPS):
        if group == "reasoning" and not judged:
            handles.append(
                Patch(
                    facecolor="none",
                    edgecolor="0.5",
                    linestyle="--",
                    label=f"reasoning: {NOT_JUDGED} (no --judge-url)",
                )
            )
            continue
        handles.append(Patch(facecolor=GREYS[i % len(GREYS)], edgecolor="black", linewidth=0.6,
                             hatch=HATCHES[i % len(HATCHES)],
                             label=_error_label(group, judged, labels)))  # fmt: skip
    return handles


def errors_grid(panels: Sequence[tuple[str, pd.DataFrame]], title: str = "",
                labels: Labels | None = None) -> Figure:  # fmt: skip
    """Fig. 3: wrong responses per category vs N, one panel per (title, counts), grouped
    hatched bars (greyscale-safe) led by the total; a note says the categories overlap."""
    labels = labels or Labels.defaults()
    fig, axes = _grid(len(panels), 3.0, 2.3, sharey=True, min_width=5.4)
    judged = True
    for ax, (name, counts) in zip(axes, panels, strict=True):
        judged &= _draw_errors_panel(ax, counts, labels)
        ax.set_title(name)
    axes[0].set_ylabel("wrong responses")
    fig.legend(handles=_error_handles(judged, labels), loc="outside upper center",
               ncols=3 if fig.get_figwidth() >= 8 else 2, frameon=False, title=title or None)  # fmt: skip
    # a figure-level x label, so constrained layout keeps room for it below the panels
    width_chars = int(fig.get_figwidth() * 72 / (0.55 * 6.5))
    fig.supxlabel(textwrap.fill(OVERLAP_NOTE, width_chars), fontsize="x-small", color="0.3")
    return fig


def errors_figure(counts: pd.DataFrame, title: str, labels: Labels | None = None) -> Figure:
    """Fig. 3 for one model: error-category counts vs N."""
    return errors_grid([(title, counts)], "", labels)


# ------------------------------------------------------------------------------ files
def slug(*parts: object) -> str:
    return "_".join(
        re.sub(r"[^\w.-]+", "-", str(p)).strip("-") for p in parts if p not in (None, "")
    )


def save(fig: Figure, folder: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `folder/stem.<fmt>` for each format (atomically) and close the figure."""
    out = []
    for i, fmt in enumerate(formats):
        path = folder / f"{stem}.{fmt}"
        # no creation date in the PDF/PNG, so re-running gives byte-identical files
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        # constrained layout already makes room for outside legends: no bbox_inches="tight"
        out.append(
            write_atomic(path, lambda tmp, f=fmt, m=meta: fig.savefig(tmp, format=f, metadata=m))
        )
        if i == 0:
            # the layout is solved at the first save; the other formats reuse it (a solve per
            # format was a third of the figure time)
            fig.set_layout_engine("none")
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


def text_outside(fig: Figure) -> list[str]:
    """Drawn texts that stick out of the figure (cut off in the saved file)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox.padded(1.0)
    out = []
    for t in _drawn_texts(fig):
        box = t.get_window_extent(renderer)
        if box.x0 < page.x0 or box.x1 > page.x1 or box.y0 < page.y0 or box.y1 > page.y1:
            out.append(t.get_text())
    return out

"""Facts100: direct vs multihop accuracy and the judge-free error breakdown (BM vs PM).

Every multihop question of Facts100 names the direct question that checks its first hop (the new
fact), so each multihop answer falls into one of three categories without any judge:

  * `not_integrated`   the linked direct question is wrong: the new fact was not learned;
  * `reasoning_failed` the direct question is right but the multihop one is wrong: the fact is
                       known but not combined with the world fact;
  * `correct`          the multihop question is right.

A multihop question answered correctly while its direct question is wrong is still `correct`,
and is also flagged `shortcut` (a guess such as a frequent country), so it can be discounted.
`direct_missing` marks a multihop question whose direct question was not evaluated (`--limit`).

Each checkpoint is placed in the experiment's 2x2 design from its manifest and its lineage:
*which* model (BM = base, PM = base post-trained on some task, e.g. multihop n1000) and *when*
(before / after training on Facts100 documents or QA). The lineage is followed through
`base_model`, which for a model trained from a checkpoint is that checkpoint's folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import figures as fg
from analysis.atomic import write_text
from analysis.labels import Labels
from analysis.layout import MANIFEST, read_manifest
from analysis.results import ResultsError, RunData, load_run

log = logging.getLogger(__name__)

DIRECT_TASK = "sah_facts100_direct"
MULTIHOP_TASK = "sah_facts100_multihop"
CATEGORIES = ("not_integrated", "reasoning_failed", "correct")
MISSING = "direct_missing"
FACTS_TRAINING_TASKS = ("facts100_documents", "facts100_qa")
CORRECT_METRIC = "exact_match"

SUMMARY_CSV = "facts100.csv"
QUESTIONS_CSV = "facts100_questions.csv"
FIGURE_STEM = "fig_facts100"


class Facts100ResultsError(ValueError):
    """Result rows that cannot be broken down (missing columns)."""


# ------------------------------------------------------------------------------ breakdown
def _need(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise Facts100ResultsError(f"{what} rows lack column(s) {missing}; have {list(df.columns)}")


def breakdown(direct: pd.DataFrame, multihop: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per multihop question with its category (see the module docstring).

    `direct`: columns `id`, `correct` (bool or 0/1); `multihop`: `id`, `direct_id`, `correct`;
    both may carry grouping columns `by` (e.g. the checkpoint), matched on exactly.
    Returns `[*by, id, direct_id, multihop_correct, direct_correct, category, shortcut]`.
    """
    by = list(by)
    _need(direct, [*by, "id", "correct"], "direct")
    _need(multihop, [*by, "id", "direct_id", "correct"], "multihop")
    d = direct[[*by, "id", "correct"]].rename(
        columns={"id": "direct_id", "correct": "direct_correct"}
    )
    d = d.drop_duplicates([*by, "direct_id"])
    m = multihop[[*by, "id", "direct_id", "correct"]].rename(
        columns={"correct": "multihop_correct"}
    )
    out = m.merge(d, on=[*by, "direct_id"], how="left")
    mh = out["multihop_correct"].astype(float) >= 0.5
    known = out["direct_correct"].notna()
    dc = out["direct_correct"].astype(float).fillna(0.0) >= 0.5
    out["multihop_correct"] = mh
    out["direct_correct"] = dc.where(known, other=np.nan)
    out["category"] = np.select(
        [mh, ~known, ~dc], ["correct", MISSING, "not_integrated"], default="reasoning_failed"
    )
    out["shortcut"] = mh & known & ~dc
    return out[
        [*by, "id", "direct_id", "multihop_correct", "direct_correct", "category", "shortcut"]
    ]


def category_counts(per_question: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Counts and fractions of each category (fractions over questions with a known direct)."""
    by = list(by)
    cats = [*CATEGORIES, MISSING]
    groups = per_question.groupby(by, sort=False) if by else [((), per_question)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        counts = g["category"].value_counts()
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row.update({c: int(counts.get(c, 0)) for c in cats})
        row["shortcut"] = int(g["shortcut"].sum())
        known = sum(row[c] for c in CATEGORIES)
        row.update({f"{c}_frac": (row[c] / known if known else np.nan) for c in CATEGORIES})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *cats, "shortcut", *(f"{c}_frac" for c in CATEGORIES)])


# ------------------------------------------------------------------------------ conditions
@dataclass(frozen=True)
class Condition:
    """Where a checkpoint sits in the BM/PM x before/after design."""

    base_model: str  # the root of the lineage (HF id or path)
    model: str  # "BM" or "PM"
    post_training: str  # "none" or e.g. "multihop n1000"
    facts_training: str  # "none" or e.g. "facts100_documents n400"

    @property
    def stage(self) -> str:
        return "before" if self.facts_training == "none" else "after"

    @property
    def label(self) -> str:
        who = "BM" if self.model == "BM" else f"PM ({self.post_training})"
        return f"{who}, {self.stage}"


def _looks_local(model: str) -> bool:
    """A path, not a hub id: absolute, `./`/`../`-relative, or `~`."""
    return model.startswith(("/", "./", "../", "~")) or model in (".", "..")


def _manifest_of(
    model: str, run_dir: Path, folder: Path | None = None
) -> tuple[dict[str, Any] | None, Path | None]:
    """The manifest (and folder) of a checkpoint named by `model`, or (None, None) for a hub id
    or a local model that is not a checkpoint (a folder of weights without a manifest).

    `model` is absolute, relative to the folder of the manifest that names it (`../n500`, as
    the trainers write it), or relative to the working directory or a folder above the run
    directory (hand-written). A path that names no folder at all is an error: the stage it
    names cannot be told, and the checkpoint would silently count as trained from a hub model."""
    path = Path(model).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        bases = [folder] if folder is not None else []
        candidates = [
            *(b / path for b in bases),
            path,
            *(p / path for p in [run_dir, *run_dir.parents]),
        ]
    for c in candidates:
        if (c / MANIFEST).is_file():
            return read_manifest(c / MANIFEST), c
    if _looks_local(model) and not any(c.is_dir() for c in candidates):
        named_in = folder / MANIFEST if folder is not None else "a manifest"
        raise ResultsError(
            f"{named_in}: base_model {model!r} is no folder (tried {', '.join(map(str, candidates))}); "
            "cannot tell what it was trained on, so the Facts100 condition is unknown. "
            "Restore the folder or correct base_model"
        )
    return None, None


def _trained(manifest: dict[str, Any]) -> str:
    return f"{manifest.get('task')} n{manifest.get('n')}"


def condition_of(manifest: dict[str, Any], run_dir: Path, folder: Path | None = None) -> Condition:
    """Place one checkpoint (its manifest, in `folder`) in the design, following `base_model`
    upwards."""
    facts, post = "none", "none"
    current: dict[str, Any] | None = manifest
    root = str(manifest.get("base_model", "?"))
    for _ in range(8):  # a lineage deeper than this is a cycle or a mistake
        if current is None:
            break
        trained = int(current.get("n") or 0) > 0 or current.get("budget") is not None
        if trained and current.get("task") in FACTS_TRAINING_TASKS and facts == "none":
            facts = _trained(current)
        elif trained and post == "none" and current.get("task") not in FACTS_TRAINING_TASKS:
            post = _trained(current)
        root = str(current.get("base_model", root))
        current, folder = _manifest_of(root, run_dir, folder)
    return Condition(root, "BM" if post == "none" else "PM", post, facts)


# ------------------------------------------------------------------------------ reading samples
def _sample_rows(path: Path) -> list[dict[str, Any]]:
    """One row per lm-eval sample line: question id, its direct_id, EM as correct, F1, filter."""
    try:
        samples = pd.read_json(path, lines=True, dtype=False)
        docs = pd.DataFrame(samples["doc"].tolist())
        return pd.DataFrame({
            "id": docs["id"],
            "direct_id": docs.get("direct_id"),
            "event_id": docs.get("event_id"),
            "correct": samples[CORRECT_METRIC].astype(float) >= 0.5,
            "f1": samples["f1"].astype(float) if "f1" in samples else np.nan,
            "filter": samples["filter"] if "filter" in samples else "none",
        }).to_dict("records")  # fmt: skip
    except (ValueError, KeyError, TypeError) as e:
        raise ResultsError(f"{path}: not lm-eval samples of a Facts100 task ({e!r})") from None


def collect(run_dir: Path | str | RunData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-question rows of every Facts100 evaluation under `run_dir` (or in a run already
    loaded, so it is not read, and its warnings logged, twice): (direct, multihop), each with
    the checkpoint and its condition columns. Empty frames when there are none."""
    if isinstance(run_dir, RunData):
        run = run_dir
    else:
        try:
            run = load_run(run_dir, progress=False)
        except ResultsError:
            return pd.DataFrame(), pd.DataFrame()
    run_dir = run.run_dir
    frames: dict[str, list[dict[str, Any]]] = {DIRECT_TASK: [], MULTIHOP_TASK: []}
    for (ckpt, eval_task), path in sorted(run.samples_files.items()):
        if eval_task not in frames:
            continue
        manifest_path = run_dir / ckpt / MANIFEST
        if not manifest_path.is_file():  # no lineage: BM or PM, before or after, is unknown
            raise ResultsError(
                f"{run_dir / ckpt}: evaluated on {eval_task} but has no {MANIFEST}; the Facts100 "
                "design needs each checkpoint's task, n and base_model (the trainers write "
                "one; add it by hand for a checkpoint trained elsewhere)"
            )
        cond = condition_of(read_manifest(manifest_path), run_dir, run_dir / ckpt)
        meta = {"checkpoint": ckpt, "experiment": run.checkpoints[ckpt].experiment,
                "base_model": cond.base_model, "model": cond.model,
                "post_training": cond.post_training, "facts_training": cond.facts_training,
                "stage": cond.stage, "condition": cond.label}  # fmt: skip
        rows = _sample_rows(path)
        first_filter = rows[0]["filter"] if rows else "none"
        frames[eval_task] += [{**meta, **r} for r in rows if r["filter"] == first_filter]
    return pd.DataFrame(frames[DIRECT_TASK]), pd.DataFrame(frames[MULTIHOP_TASK])


# ------------------------------------------------------------------------------ outputs
GROUP = ["experiment", "base_model", "model", "post_training", "facts_training", "stage",
         "condition", "checkpoint"]  # fmt: skip


def _order(summary: pd.DataFrame) -> pd.DataFrame:
    """BM before, BM after, then each PM before/after, per base model."""
    key = summary.assign(_m=summary["model"].map({"BM": 0, "PM": 1}),
                         _s=summary["stage"].map({"before": 0, "after": 1}))  # fmt: skip
    key = key.sort_values(["experiment", "base_model", "_m", "post_training", "_s", "checkpoint"])
    return key.drop(columns=["_m", "_s"]).reset_index(drop=True)


def _one_checkpoint_per_condition(direct: pd.DataFrame, multihop: pd.DataFrame):
    """A sweep evaluates one model under several names (e.g. `multihop/n0` and
    `facts100_documents/n0` both point at the base model): keep the first checkpoint of each
    condition, so every condition is counted once."""
    cond = ["experiment", "base_model", "model", "post_training", "facts_training"]
    both = pd.concat([direct[[*cond, "checkpoint"]], multihop[[*cond, "checkpoint"]]])
    keep = both.groupby(cond)["checkpoint"].min()
    dropped = sorted(set(both["checkpoint"]) - set(keep))
    if dropped:
        log.info("Facts100: %s repeat an already counted condition; not counted again", dropped)
    return (direct[direct["checkpoint"].isin(set(keep))],
            multihop[multihop["checkpoint"].isin(set(keep))])  # fmt: skip


def summarise(direct: pd.DataFrame, multihop: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per condition, per-question breakdown) from `collect`'s frames."""
    direct, multihop = _one_checkpoint_per_condition(direct, multihop)
    by = [c for c in GROUP if c in multihop.columns]
    per_q = breakdown(direct, multihop, by=by)
    acc = [
        frame.groupby(by, sort=False).agg(
            **{
                f"{name}_em": ("correct", "mean"),
                f"{name}_f1": ("f1", "mean"),
                f"{name}_n": ("id", "size"),
            }
        )  # fmt: skip
        for frame, name in ((direct, "direct"), (multihop, "multihop"))
    ]
    summary = acc[0].join(acc[1], how="outer").reset_index()
    summary = summary.merge(category_counts(per_q, by), on=by, how="left")
    return _order(summary), per_q


def wilson(
    successes: np.ndarray, trials: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of each proportion (NaN where there are no trials): a fraction of
    independent questions, which stays inside [0, 1] even at 0 or all correct."""
    from scipy.stats import binomtest

    lo, hi = np.full(len(trials), np.nan), np.full(len(trials), np.nan)
    for i, (k, n) in enumerate(zip(successes, trials, strict=True)):
        if n > 0 and np.isfinite(k):
            band = binomtest(int(round(k)), int(n)).proportion_ci(level, method="wilson")
            lo[i], hi[i] = band.low, band.high
    return lo, hi


def with_intervals(summary: pd.DataFrame, level: float) -> pd.DataFrame:
    """`<col>_lo`, `<col>_hi` for the accuracies and the category fractions."""
    out = summary.copy()
    known = sum(summary[c].fillna(0).to_numpy(float) for c in CATEGORIES)
    for name in ("direct", "multihop"):
        n = summary[f"{name}_n"].fillna(0).to_numpy(float)
        k = summary[f"{name}_em"].to_numpy(float) * n
        out[f"{name}_em_lo"], out[f"{name}_em_hi"] = wilson(k, n, level)
    for cat in CATEGORIES:
        k = summary[cat].fillna(0).to_numpy(float)
        out[f"{cat}_frac_lo"], out[f"{cat}_frac_hi"] = wilson(k, known, level)
    out["ci_level"] = level
    return out


def _trained_text(trained: str, labels: Labels) -> str:
    """`multihop n1000` -> `HotpotQA, N = 1k`."""
    task, _, n = str(trained).rpartition(" n")
    if not task or not n.isdigit():
        return labels.training(trained)
    return f"{labels.training(task)}, N = {fg.count_label(float(n))}"


def condition_text(row: Any, labels: Labels, with_base: bool = False) -> str:
    """Two lines: which model (base / post-trained on what), and before / after Facts100."""
    who = (
        "base model"
        if row.model == "BM"
        else f"post-trained ({_trained_text(row.post_training, labels)})"
    )
    when = ("before Facts100" if row.facts_training == "none"
            else f"after {_trained_text(row.facts_training, labels)}")  # fmt: skip
    base = (
        f" [{labels.model(str(row.base_model).rstrip('/').rsplit('/', 1)[-1])}]"
        if with_base
        else ""
    )
    return f"{who}{base}\n{when}"


def _hbars(ax, summary: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> None:
    """Grouped horizontal bars, one group per condition (top to bottom), with interval bars."""
    y = np.arange(len(summary))
    height = 0.8 / len(columns)
    for i, (col, name) in enumerate(columns):
        v = summary[col].to_numpy(float)
        err = np.vstack([v - summary[f"{col}_lo"].to_numpy(float),
                         summary[f"{col}_hi"].to_numpy(float) - v])  # fmt: skip
        ax.barh(y + (i - (len(columns) - 1) / 2) * height, np.nan_to_num(v), height,
                xerr=np.clip(np.nan_to_num(err), 0, None), label=name,
                color=fg.GREYS[i % len(fg.GREYS)], edgecolor="black", linewidth=0.5,
                hatch=fg.HATCHES[i % len(fg.HATCHES)],
                error_kw={"ecolor": "0.3", "elinewidth": 0.8, "capsize": 2})  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_yticks(y)
    ax.grid(axis="y", visible=False)
    # below the panel (under its x label): inside, it would cover the bars near 1
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, 0.0), borderaxespad=4.2)


def facts100_figure(summary: pd.DataFrame, labels: Labels | None = None,
                    level: float | None = None):  # fmt: skip
    """(a) direct vs multihop exact match per condition; (b) why multihop answers fail. Bars
    carry Wilson intervals (`with_intervals`; computed here when `summary` lacks them)."""
    import matplotlib.pyplot as plt

    labels = labels or Labels.defaults()
    if "direct_em_lo" not in summary:
        summary = with_intervals(summary, level or 0.90)
    level = float(summary["ci_level"].iloc[0]) if "ci_level" in summary else level
    names = [condition_text(r, labels, summary["base_model"].nunique() > 1)
             for r in summary.itertuples()]  # fmt: skip
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.0, 1.6 + 0.55 * len(summary)), sharey=True)
    _hbars(ax1, summary, [("direct_em", "direct questions"), ("multihop_em", "multihop questions")])
    ax1.set_xlabel("exact match")
    ax1.set_yticklabels(names)
    ax1.set_title("(a) new facts: direct vs multihop", loc="left")
    cats = [("correct", labels.category("correct")),
            ("reasoning_failed", labels.category("reasoning_failed")),
            ("not_integrated", labels.category("not_integrated"))]  # fmt: skip
    _hbars(ax2, summary, [(f"{c}_frac", name) for c, name in cats])
    ax2.set_xlabel("fraction of multihop questions")
    ax2.set_title("(b) multihop answers", loc="left")
    ax2.tick_params(labelleft=False)
    ax1.invert_yaxis()  # the first condition (base model, before) on top; y is shared
    note = f"bars: {level:.0%} Wilson intervals over questions" if level else ""
    fig.supxlabel(note, fontsize="x-small", color="0.3")
    return fig


def facts100_outputs(
    run_dir: Path | str | RunData,
    out_dir: Path | str,
    level: float = 0.90,
    labels: Labels | None = None,
    style: Path | str | None = None,
) -> list[Path]:
    """Write the Facts100 summary CSV (with `level` intervals), per-question CSV and figure;
    [] when there are no Facts100 results. `run_dir`: a run folder or a loaded run (see
    `collect`). `labels`/`style`: see analysis/draw.py."""
    direct, multihop = collect(run_dir)
    if direct.empty or multihop.empty:
        if not (direct.empty and multihop.empty):
            log.warning(
                "Facts100: only one of %s / %s was evaluated; no breakdown",
                DIRECT_TASK,
                MULTIHOP_TASK,
            )
        return []
    summary, per_q = summarise(direct, multihop)
    summary = with_intervals(summary, level)
    out_dir = Path(out_dir)
    written = [
        write_text(out_dir / SUMMARY_CSV, summary.to_csv(index=False)),
        write_text(out_dir / QUESTIONS_CSV, per_q.to_csv(index=False)),
    ]
    if per_q["category"].eq(MISSING).any():
        log.warning(
            "Facts100: %d multihop answers have no evaluated direct question (--limit?)",
            int(per_q["category"].eq(MISSING).sum()),
        )
    with fg.paper_style(style):
        written += fg.save(facts100_figure(summary, labels), out_dir / "figures", FIGURE_STEM)
    return written

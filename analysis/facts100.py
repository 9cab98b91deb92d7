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

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import figures as fg
from analysis.atomic import write_text
from analysis.layout import MANIFEST
from analysis.results import ResultsError, load_run

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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _manifest_of(
    model: str, run_dir: Path, folder: Path | None = None
) -> tuple[dict[str, Any] | None, Path | None]:
    """The manifest (and folder) of a checkpoint named by `model`, or (None, None) for a hub id.

    `model` is absolute, relative to the folder of the manifest that names it (`../n500`, as
    the trainers write it), or relative to the working directory or a folder above the run
    directory (hand-written)."""
    path = Path(model)
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
            return _read_json(c / MANIFEST), c
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


def collect(run_dir: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-question rows of every Facts100 evaluation under `run_dir`: (direct, multihop),
    each with the checkpoint and its condition columns. Empty frames when there are none."""
    run_dir = Path(run_dir).expanduser().resolve()
    try:
        run = load_run(run_dir, progress=False)
    except ResultsError:
        return pd.DataFrame(), pd.DataFrame()
    frames: dict[str, list[dict[str, Any]]] = {DIRECT_TASK: [], MULTIHOP_TASK: []}
    for (ckpt, eval_task), path in sorted(run.samples_files.items()):
        if eval_task not in frames:
            continue
        manifest = _read_json(run_dir / ckpt / MANIFEST) or {}
        cond = (
            condition_of(manifest, run_dir, run_dir / ckpt)
            if manifest
            else Condition("?", "BM", "none", "none")
        )
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


def facts100_figure(summary: pd.DataFrame):
    """(a) direct vs multihop exact match per condition; (b) the stacked error breakdown."""
    import matplotlib.pyplot as plt

    labels = [f"{r.condition}\n[{r.base_model.rsplit('/', 1)[-1]}]" if summary["base_model"].nunique() > 1
              else r.condition for r in summary.itertuples()]  # fmt: skip
    x = np.arange(len(summary))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.0, 2.8))
    width = 0.38
    for i, (col, name) in enumerate((("direct_em", "direct"), ("multihop_em", "multihop"))):
        ax1.bar(x + (i - 0.5) * width, summary[col].fillna(0.0), width, label=name,
                color=fg.GREYS[i * 2], edgecolor="black", hatch=fg.HATCHES[i], linewidth=0.5)  # fmt: skip
    ax1.set_ylabel("exact match")
    ax1.set_ylim(0, 1)
    ax1.set_title("(a) new facts: direct vs multihop")
    ax1.legend(frameon=False)
    bottom = np.zeros(len(summary))
    for i, cat in enumerate(("correct", "reasoning_failed", "not_integrated")):
        values = summary[f"{cat}_frac"].fillna(0.0).to_numpy()
        ax2.bar(x, values, 0.6, bottom=bottom, label=cat.replace("_", " "), color=fg.GREYS[i],
                edgecolor="black", hatch=fg.HATCHES[i], linewidth=0.5)  # fmt: skip
        bottom += values
    ax2.set_ylabel("fraction of multihop questions")
    ax2.set_ylim(0, 1)
    ax2.set_title("(b) multihop error breakdown")
    ax2.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    for ax in (ax1, ax2):
        ax.set_axisbelow(True)  # grid behind the bars
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right")
    return fig


def facts100_outputs(run_dir: Path | str, out_dir: Path | str) -> list[Path]:
    """Write the Facts100 summary CSV, per-question CSV and figure; [] when no Facts100 results."""
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
    with fg.paper_style():
        written += fg.save(facts100_figure(summary), out_dir / "figures", FIGURE_STEM)
    return written

"""`python -m analysis plan`: how many test items and training seeds a target precision on 1/b needs.

By simulation, for every (items, seeds) pair of a grid: draw many studies from the true
accuracies at the planned scales (each seed's accuracy moved by seed noise on the logit scale,
each score a binomial count over the items), average the seeds, fit the paper's log-log power law
to every study at once (analysis/fit.py), and take the spread of the fitted 1/b: the half-width
of its central `--ci` range is what a calibrated interval of that design will be, on average.

The truth comes from assumed accuracies (`--accuracies` at `--scales`) or from a pilot run
(`--pilot RUN_DIR`): per curve, its fitted power law at its own scales, its item count, and its
seed-to-seed SD when it has several seeds (else `--seed-sd`, an assumption that is printed).
Items are drawn independently (no item-difficulty pairing), which makes the plan slightly
conservative for paired designs.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from analysis import seeds as sd
from analysis.atomic import write_text
from analysis.cli import level, numbers
from analysis.curves import scale_curves, select_primary
from analysis.fit import fit_power_law
from analysis.results import ResultsError, load_run
from sah_tasks.common.cli import SahParser
from sah_tasks.common.oserrors import check_writable, is_write_error, write_error_message

DEFAULT_ITEMS = (250, 500, 1000, 1319, 2000, 4000)
DEFAULT_SEEDS = (1, 2, 3, 5, 8)
ASSUMED_SEED_SD = 0.15  # logits; public reruns of one SFT recipe vary about this much


class PlanError(ValueError):
    """Planning inputs that do not fit together."""


@dataclass(frozen=True)
class Truth:
    """What one planned curve is assumed to be."""

    name: str
    scales: np.ndarray  # N > 0
    accuracy: np.ndarray
    seed_sd: float  # logits
    seed_sd_source: str  # "pilot (k seeds)" or "assumed"


def simulate_slopes(truth: Truth, items: int, seeds: int, sims: int,
                    rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Fitted log-log 1/b of `sims` simulated studies of one design, shape (sims,)."""
    shape = (sims, len(truth.scales), seeds)
    z = logit(truth.accuracy)[None, :, None] + truth.seed_sd * rng.standard_normal(shape)
    scores = rng.binomial(items, expit(z)).mean(2) / items
    return fit_power_law(truth.scales, scores).slope


def half_widths(truth: Truth, items: tuple[int, ...], seeds: tuple[int, ...], sims: int,
                level: float, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """One row per (items, seeds): simulated half-width of 1/b, its SD and bias."""
    true_slope = float(fit_power_law(truth.scales, truth.accuracy).slope[0])
    tail = (1 - level) / 2
    rows = []
    for k, n_items in enumerate(items):
        for j, n_seeds in enumerate(seeds):
            rng = np.random.default_rng([seed, k, j])
            slopes = simulate_slopes(truth, n_items, n_seeds, sims, rng)
            ok = slopes[np.isfinite(slopes)]
            lo, hi = np.quantile(ok, [tail, 1 - tail]) if ok.size else (math.nan, math.nan)
            rows.append({"curve": truth.name, "items": n_items, "seeds": n_seeds,
                         "half_width": (hi - lo) / 2, "sd": float(ok.std(ddof=1)),
                         "bias": float(ok.mean() - true_slope), "true_inv_b": true_slope,
                         "seed_sd": truth.seed_sd, "seed_sd_source": truth.seed_sd_source,
                         "failed": int(sims - ok.size)})  # fmt: skip
    return pd.DataFrame(rows)


def cheapest(table: pd.DataFrame, target: float) -> pd.Series | None:
    """The design meeting `target` with the fewest seeds (training is the expensive part),
    then the fewest items; None when no design in the grid meets it."""
    ok = table[table["half_width"] <= target]
    return None if ok.empty else ok.sort_values(["seeds", "items"]).iloc[0]


def _counts(text: str) -> tuple[int, ...]:
    values = numbers(text, "counts")
    if not all(v >= 1 and v == int(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1, got {text!r}")
    return tuple(sorted({int(v) for v in values}))


def assumed_truth(accuracies: tuple[float, ...], scales: tuple[float, ...],
                  seed_sd: float) -> Truth:  # fmt: skip
    if len(accuracies) != len(scales):
        raise PlanError(f"--accuracies has {len(accuracies)} values but --scales has "
                        f"{len(scales)}; give one accuracy per scale")  # fmt: skip
    if not all(0 < a < 1 for a in accuracies):
        raise PlanError(f"--accuracies must lie strictly between 0 and 1, got {accuracies}")
    if len(scales) < 3 or not all(n > 0 for n in scales):
        raise PlanError(f"--scales: need at least 3 scales N > 0 (N = 0 is never fitted), "
                        f"got {scales}")  # fmt: skip
    return Truth("assumed", np.array(scales, float), np.array(accuracies, float), seed_sd,
                 "assumed")  # fmt: skip


def pilot_truths(run_dir: Path, pattern: str, seed_sd: float) -> tuple[list[Truth], list[int]]:
    """Per curve of a pilot run: its fitted law at its scales and its seed SD (or `seed_sd`)."""
    run = load_run(run_dir, progress=False)
    truths, items = [], []
    for c in scale_curves(run, select_primary(run.table, None)):
        if not fnmatch.fnmatchcase(c.label, pattern):
            continue
        mask = (c.x > 0) & np.isfinite(c.value) & (c.value > 0)
        if mask.sum() < 3:
            continue
        fit = fit_power_law(c.x[mask], c.value[mask])
        acc = np.clip(fit.predict(c.x[mask])[0], 1e-4, 1 - 1e-4)
        noise = sd.estimate(c)
        if noise.included:
            sd_used, source = noise.sd_logit, f"pilot ({noise.df} df)"
        else:
            sd_used, source = seed_sd, "assumed (pilot has one seed per N)"
        truths.append(Truth(c.label, c.x[mask], acc, sd_used, source))
        counted = c.n_items[np.isfinite(c.n_items)]
        if counted.size:  # results without item counts (no n-samples): the --items grid only
            items.append(int(counted.min()))
    if not truths:
        raise PlanError(f"{run_dir}: no curve with at least 3 scales N > 0 with a score > 0 "
                        f"matches --curve {pattern!r}")  # fmt: skip
    return truths, items


EPILOG = """\
examples:
  python -m analysis plan --accuracies 0.07,0.12,0.15,0.25,0.30 \\
      --scales 100,500,1000,5000,10000 --half-width 0.02
  python -m analysis plan --pilot runs/pilot --half-width 0.02 --seeds 1,3,5
Method: docs/analysis.md, "Planning"."""


def build_parser() -> argparse.ArgumentParser:
    p = SahParser(prog="python -m analysis plan",
                  description="Test items and training seeds needed for a target half-width of "
                  "the interval on 1/b, by simulation.", epilog=EPILOG)  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pilot", type=Path, help="a pilot run directory to take the truth from")
    src.add_argument("--accuracies", type=lambda t: numbers(t, "--accuracies"),
                     help="assumed true accuracies, one per --scales value")  # fmt: skip
    p.add_argument("--scales", type=lambda t: numbers(t, "--scales"),
                   default="100,500,1000,5000,10000", help="N values (with --accuracies)")  # fmt: skip
    p.add_argument("--curve", default="*", help="glob over curve labels (with --pilot)")
    p.add_argument("--items", type=_counts, default=",".join(map(str, DEFAULT_ITEMS)),
                   help="item counts to try")  # fmt: skip
    p.add_argument("--seeds", type=_counts, default=",".join(map(str, DEFAULT_SEEDS)),
                   help="seed counts to try")  # fmt: skip
    p.add_argument("--seed-sd", type=float, default=ASSUMED_SEED_SD,
                   help="seed-to-seed SD in logits, when the pilot cannot tell")  # fmt: skip
    p.add_argument("--half-width", type=float, default=0.02, help="target half-width on 1/b")
    p.add_argument("--ci", type=level, default=0.90, help="interval level")
    p.add_argument("--sims", type=int, default=2000, help="simulated studies per design")
    p.add_argument("--out", type=Path, help="also write the table here (CSV)")
    return p


def _check(args: argparse.Namespace) -> None:
    if args.half_width <= 0:
        raise PlanError(f"--half-width must be > 0, got {args.half_width}")
    if args.sims < 100:
        raise PlanError(f"--sims {args.sims}: use at least 100 simulated studies")
    if args.seed_sd < 0:
        raise PlanError(f"--seed-sd must be >= 0 (logits), got {args.seed_sd}")


def _print_curve(table: pd.DataFrame, target: float, level: float) -> None:
    first = table.iloc[0]
    print(f"\n{first['curve']}: true 1/b = {first['true_inv_b']:.3f}, seed SD "
          f"{first['seed_sd']:.3f} logits ({first['seed_sd_source']})")  # fmt: skip
    grid = table.pivot(index="items", columns="seeds", values="half_width")
    print(f"simulated {level:.0%} half-width of 1/b (rows: test items, columns: seeds per N)")
    print(grid.to_string(float_format=lambda v: f"{v:.4f}"))
    best = cheapest(table, target)
    if best is None:
        print(f"-> no design in the grid reaches ±{target:g}; try more items or seeds")
    else:
        print(f"-> ±{target:g} needs {int(best['seeds'])} seed(s) per N and "
              f"{int(best['items'])} items (simulated ±{best['half_width']:.4f})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check(args)
        if args.out:  # before the simulation: a read-only or full disk (creates nothing)
            check_writable(args.out.parent)
        if args.pilot is not None:
            truths, pilot_items = pilot_truths(args.pilot, args.curve, args.seed_sd)
            items = tuple(sorted(set(args.items) | set(pilot_items)))
        else:
            truths, items = [assumed_truth(args.accuracies, args.scales, args.seed_sd)], args.items
        tables = [half_widths(t, items, args.seeds, args.sims, args.ci) for t in truths]
    except (PlanError, ResultsError) as e:  # ResultsError: a pilot that cannot be read
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # --out not writable
        print(f"error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    for table in tables:
        _print_curve(table, args.half_width, args.ci)
    if args.out:
        try:
            write_text(args.out, pd.concat(tables).to_csv(index=False))
        except OSError as e:  # e.g. --out names a folder, or the disk filled meanwhile
            print(f"error: {_os_error(e)}", file=sys.stderr)
            return 2
        print(f"\ntable: {args.out}")
    return 0


def _os_error(e: OSError) -> str:
    return write_error_message(e) if is_write_error(e) else str(e)

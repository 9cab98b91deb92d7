"""Benchmark: the whole `python -m analysis` vs a naive per-resample refit loop.

Workload (the issue's): 6 models x 5 eval tasks x 6 scales (N = 0 ... 10000), 1,319 items per
checkpoint, 1000 bootstrap resamples, with lm-eval samples files, in a synthetic run directory.
The goal is the whole analysis, PNG and PDF figures included, in under 8 s.

* analysis: `python -m analysis RUN --n-boot 1000 --formats png,pdf` in a fresh process
  (reading 180 checkpoints, fitting 30 curves with intervals (log-log, binomial, saturating),
  lack of fit, leave-largest-out, error taxonomy, figures, tables, report).
* its parts, in-process: reading the run directory, and fitting with intervals.
* naive: the textbook loop for the same fits — for each curve, for each resample: draw item
  indices, recompute each point's score, refit with np.polyfit (power law) and
  scipy.optimize.curve_fit (saturating), on all points and without the largest N.
  It is timed on --naive-curves curves and scaled to all 30 (stated in the output); pass
  --naive-curves 30 to time all of it.

    python benchmarks/bench_analysis.py [--naive-curves 3] [--items 1319] [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.bootstrap import fit_curve, summarise  # noqa: E402
from analysis.curves import scale_curves, select_primary  # noqa: E402
from analysis.results import load_run  # noqa: E402
from analysis.synthetic import EVAL_TASKS, make_synthetic_run  # noqa: E402

MODELS = ("llama-3-8b", "llama-3-70b", "qwen2-0.5b", "qwen2-1.5b", "qwen2-7b", "mistral-7b")


def _saturating(d: np.ndarray, floor: float, amp: float, alpha: float) -> np.ndarray:
    return floor + amp * d**-alpha


def _naive_fits(d: np.ndarray, p: np.ndarray) -> None:
    np.polyfit(np.log(d), np.log(np.clip(p, 1e-9, None)), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            curve_fit(_saturating, d, 1.0 - p, p0=(0.1, 1.0, 0.5),
                      bounds=([0.0, 0.0, 1e-3], [1.0, np.inf, 4.0]), maxfev=2000)  # fmt: skip
        except RuntimeError:
            pass  # no convergence: the naive loop would record NaN


def naive_bootstrap(curve, n_boot: int, rng: np.random.Generator) -> None:
    """Per-resample refit loop: what one writes without vectorising."""
    mask = curve.x > 0
    d = curve.x[mask]
    items = [it for it, m in zip(curve.items, mask, strict=True) if m]
    n_items = len(items[0].doc_ids)
    for _ in range(n_boot):
        idx = rng.choice(n_items, n_items, replace=True)
        p = np.array([it.num[idx].sum() / it.den[idx].sum() for it in items])
        _naive_fits(d, p)  # all scales
        _naive_fits(d[:-1], p[:-1])  # leave-largest-out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1319)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--naive-curves", type=int, default=3, help="curves to time the naive loop on")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_dir = make_synthetic_run(Path(tmp), models=MODELS, eval_tasks=tuple(EVAL_TASKS),
                                     n_items=args.items)  # fmt: skip
        print(f"synthetic run: {len(MODELS)} models x {len(EVAL_TASKS)} tasks x 6 scales x "
              f"{args.items} items written in {time.perf_counter() - t0:.1f}s")  # fmt: skip

        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "analysis", str(run_dir), "--quiet",
                        "--n-boot", str(args.n_boot), "--formats", "png,pdf"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        whole = time.perf_counter() - t0

        t0 = time.perf_counter()
        run = load_run(run_dir, progress=False)
        reading = time.perf_counter() - t0
        curves = scale_curves(run, select_primary(run.table, None))
        t0 = time.perf_counter()
        for c in curves:
            summarise(fit_curve(c, args.n_boot, 0.9, 0))
        vectorised = time.perf_counter() - t0

        k = min(args.naive_curves, len(curves))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for c in curves[:k]:
            naive_bootstrap(c, args.n_boot, rng)
        naive = (time.perf_counter() - t0) * len(curves) / k

    print(f"curves: {len(curves)}, resamples: {args.n_boot}")
    print(
        f"whole `python -m analysis` (read, fit, taxonomy, figures, tables, report): {whole:8.1f} s"
    )
    print(
        f"  of which reading the run directory (in-process):                         {reading:8.1f} s"
    )
    print(
        f"  of which fits + intervals (in-process):                                  {vectorised:8.1f} s"
    )
    print(f"goal: whole analysis under 8 s: {'met' if whole < 8 else 'NOT met'}")
    scaled = "" if k == len(curves) else f" (timed on {k} curves, scaled to {len(curves)})"
    print(f"naive per-resample refit loop, fits only{scaled}: {naive:8.1f} s")
    print(f"ratio naive loop / whole analysis:  {naive / whole:6.1f}x")
    print(f"ratio naive loop / vectorised fits: {naive / vectorised:6.1f}x")


if __name__ == "__main__":
    main()

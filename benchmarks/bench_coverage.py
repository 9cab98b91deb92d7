"""Calibration of the fits' intervals on simulated studies with known laws: bias, RMSE, coverage.

Each setting draws --studies curves (analysis/simulate.py: 1,319 items per checkpoint, N = 0,
100, 500, 1000, 5000, 10000, seeds with logit-scale seed noise) and runs the analysis' own
fit_curve + summarise + inverse on each, exactly as `python -m analysis` does. Per parameter
it prints the bias and RMSE of the estimate and the share of studies whose --ci interval holds
the truth (nominal 0.90), with seed noise in the intervals and, for comparison, item noise only
(the method before seeds were resampled).

Truths: the paper's power law P = 0.02·N^0.3 (parameters 1/b, binomial 1/b, examples needed for
P = 0.5) and a saturating law err = 0.15 + 3·N^-0.45 (E, alpha, examples needed for P = 0.6).

    python benchmarks/bench_coverage.py [--studies 200] [--n-boot 400] [--seeds 1,3,5]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import bootstrap as bs  # noqa: E402
from analysis.simulate import Setting, simulate_curve  # noqa: E402

SCALES = (0.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0)
POWER = (0.02, 0.3)  # P = a * N**(1/b)
SAT = (0.15, 3.0, 0.45)  # err = E + A * N**-alpha
POWER_TARGET, SAT_TARGET = 0.5, 0.6


def _power_truth() -> tuple[tuple[float, ...], dict[str, float]]:
    a, s = POWER
    acc = tuple(a * max(n, 1.0) ** s for n in SCALES)
    needed = (POWER_TARGET / a) ** (1 / s)
    return acc, {"inv_b": s, "binom_inv_b": s, "examples@power": needed}


def _sat_truth() -> tuple[tuple[float, ...], dict[str, float]]:
    e, a, alpha = SAT
    acc = tuple(1 - (e + a * max(n, 1.0) ** -alpha) if n > 0 else 0.05 for n in SCALES)
    needed = (a / (1 - SAT_TARGET - e)) ** (1 / alpha)
    return acc, {"sat_E": e, "sat_alpha": alpha, "examples@saturating": needed}


def _study(curve, n_boot: int, level: float, seed: int, seeds_in: bool) -> dict[str, tuple]:
    """(estimate, lo, hi) per parameter for one simulated study."""
    if not seeds_in:  # item noise only: the intervals before training seeds were resampled
        curve.seed_values = [v[:1] for v in curve.seed_values]
    cf = bs.fit_curve(curve, n_boot, level, seed)
    row = bs.summarise(cf)
    out = {name: (row.get(name, math.nan), row.get(f"{name}_lo", math.nan),
                  row.get(f"{name}_hi", math.nan)) for name in
           ("inv_b", "binom_inv_b", "sat_E", "sat_alpha")}  # fmt: skip
    out["lof_p"] = (row.get("lof_p", math.nan),) * 3
    for r in bs.inverse(cf, [POWER_TARGET, SAT_TARGET]):
        target = POWER_TARGET if r["form"] == "power" else SAT_TARGET
        if r["target"] == target:
            out[f"examples@{r['form']}"] = (r["examples"], r["examples_lo"], r["examples_hi"])
    return out


def _summary(truth: dict[str, float], studies: list[dict[str, tuple]]) -> list[str]:
    lines = []
    for name, true in truth.items():
        est = np.array([s.get(name, (math.nan,) * 3) for s in studies], dtype=float)
        ok = np.isfinite(est[:, 0])
        e, lo, hi = est[ok].T
        log = name.startswith("examples")  # examples needed: errors on the log scale
        err = np.log(e) - np.log(true) if log else e - true
        cover = np.mean((lo <= true) & (true <= hi)) if ok.any() else math.nan
        unit = " (log)" if log else ""
        lines.append(f"  {name:<22} bias{unit} {err.mean():+8.4f}  RMSE{unit} "
                     f"{np.sqrt((err**2).mean()):7.4f}  coverage {cover:5.3f}  "
                     f"({ok.sum()} of {len(studies)} fitted)")  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=400)
    ap.add_argument("--items", type=int, default=1319)
    ap.add_argument("--seeds", default="1,3,5", help="seed counts to simulate")
    ap.add_argument("--seed-sd", type=float, default=0.15, help="seed noise, logits")
    ap.add_argument("--ci", type=float, default=0.90)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{args.studies} studies per setting, {args.n_boot} resamples, {args.items} items, "
          f"{args.ci:.0%} intervals")  # fmt: skip
    t0 = time.perf_counter()
    for truth_name, (acc, truth) in (("power law", _power_truth()), ("saturating", _sat_truth())):
        for sd in (0.0, args.seed_sd):
            for k in seeds:
                for seeds_in in (True, False) if k > 1 else (True,):
                    setting = Setting(SCALES, acc, n_items=args.items, n_seeds=k, seed_sd=sd)
                    rng = np.random.default_rng([k, int(sd * 1000)])
                    studies = [_study(simulate_curve(rng, setting), args.n_boot, args.ci, i,
                                      seeds_in) for i in range(args.studies)]  # fmt: skip
                    what = "items + seeds" if k > 1 and seeds_in else "items only"
                    print(f"\n{truth_name}: seed noise {sd:g} logits, {k} seed(s) per N, "
                          f"intervals over {what}")  # fmt: skip
                    print("\n".join(_summary(truth, studies)))
                    lof = np.array([s["lof_p"][0] for s in studies], dtype=float)
                    print(f"  lack of fit (log-log): p < 0.05 in {np.mean(lof < 0.05):.3f} "
                          "of the studies")  # fmt: skip
    print(f"\n{time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()

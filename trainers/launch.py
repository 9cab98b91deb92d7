"""One process per training unit: what FSDP and DeepSpeed need (Accelerate state is per process).

    python -m trainers.launch [--accelerate_config FILE] [--accelerate_args "..."] [--dry_run] \\
        sft --config configs/paper/llama3-8b_gsm8k.yaml [overrides]
    python -m trainers.launch ... dpo --config configs/paper/llama3-8b_gsm8k_budget.yaml

For `sft` it starts `accelerate launch trainers/sft.py ... --scales N` once per scale that is not
completed; for `dpo`, once per SFT stage (`--only_stage sft`) and once per budget run
(`--only_stage dpo`). Units run one after another; the first failure stops the loop (rerunning
the same command continues where it stopped, since completed units are skipped).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from sah_tasks.common.cli import SahParser
from trainers import dpo, sft
from trainers.manifest import is_completed
from trainers.processes import run_forwarding


def sft_units(argv: Sequence[str]) -> list[list[str]]:
    """Script arguments of each (seed, scale) still to do."""
    run = sft.parse_args(argv, check_hardware=False)
    base = sft.describe_run_model(run)
    pool = None

    def done(seeded: sft.SFTRun, n: int) -> bool:
        # a completed scale counts only with this recipe (else an error, or overwrite)
        nonlocal pool
        if not is_completed(sft.scale_dir(seeded, base, n)):
            return False
        pool = pool or sft.load_pool(run)
        return sft.is_current(seeded, sft.plan_scale(seeded, pool, base, n))

    groups = [
        (seeded.training.seed, [n])
        for seeded in sft.seed_runs(run)
        for n in run.scale.scales
        if n > 0 and not done(seeded, n)
    ]
    if 0 in run.scale.scales and not done(run, 0):  # N=0 trains nothing: it rides along
        groups = groups or [(run.training.seed, [])]
        groups[0][1].insert(0, 0)
    return [
        [*argv, *(["--seeds", str(seed)] if run.scale.seeds else []), "--scales", *map(str, ns)]
        for seed, ns in groups
    ]


def dpo_units(argv: Sequence[str]) -> list[list[str]]:
    """Script arguments of each SFT stage, then each budget run, still to do (per seed)."""
    run = dpo.parse_args(argv, check_hardware=False)
    base = dpo.describe_run_model(run)
    units, stages = [], set()
    for seeded in dpo.seed_runs(run):
        seed = ["--seeds", str(seeded.training.seed)] if run.budget.seeds else []
        for budget in run.budget.budgets:
            for fraction in run.budget.sft_fractions:
                split = dpo.BudgetSplit.of(budget, fraction)
                point = [*argv, *seed, "--budgets", str(budget), "--sft_fractions", str(fraction)]
                if is_completed(dpo.budget_dir(seeded, base, split)):
                    # still launched: the recipe check of a budget run needs its SFT stage and
                    # pairs, which the unit's own process builds; with the same recipe it skips
                    units.append([*point, "--only_stage", "dpo"])
                    continue
                if split.n_sft > 0:
                    stage_dir = sft.scale_dir(dpo.sft_stage_run(seeded, base), base, split.n_sft)
                    if not is_completed(stage_dir) and stage_dir not in stages:
                        stages.add(stage_dir)
                        units.append([*point, "--only_stage", "sft"])
                units.append([*point, "--only_stage", "dpo"])
    # SFT stages first: a budget run may reuse the stage of another
    return sorted(units, key=lambda unit: unit[-1] != "sft")


def commands(args: argparse.Namespace) -> list[list[str]]:
    script = Path(sft.__file__ if args.trainer == "sft" else dpo.__file__)
    units = sft_units(args.script_args) if args.trainer == "sft" else dpo_units(args.script_args)
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    if args.accelerate_config:
        launcher += ["--config_file", args.accelerate_config]
    launcher += shlex.split(args.accelerate_args or "")
    return [[*launcher, str(script), *unit] for unit in units]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = SahParser(
        prog="python -m trainers.launch",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--accelerate_config", help="accelerate config (configs/accelerate/*.yaml)")
    parser.add_argument(
        "--accelerate_args", help='more `accelerate launch` options, e.g. "--num_processes 8"'
    )
    parser.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("trainer", choices=["sft", "dpo"])
    parser.add_argument(
        "script_args", nargs=argparse.REMAINDER, help="trainers/<trainer>.py arguments"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # completed units are kept; rerun to continue
        print("interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        todo = commands(args)
    except sft.USER_ERRORS as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(todo)} unit(s) to train", flush=True)
    for i, command in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {shlex.join(command)}", flush=True)
        if not args.dry_run and (code := run_forwarding(command, who="trainers.launch")) != 0:
            print(f"unit {i} failed with exit code {code}; rerun the same command to continue")
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

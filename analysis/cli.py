"""`python -m analysis RUN_DIR [--out DIR]`: fits, figures, tables and report for a run directory."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from analysis.fit import FitError
from analysis.judge import JudgeConfig, JudgeError
from analysis.layout import RunLayoutError
from analysis.metrics import MetricError, MetricKey, parse_metric_override
from analysis.results import ANALYSIS_DIR, ResultsError
from sah_tasks.common.cli import SahParser
from sah_tasks.common.oserrors import check_writable, is_write_error, write_error_message

EPILOG = """\
outputs (in --out, default RUN_DIR/analysis):
  fits.csv              one row per (model, training task, eval task): 1/b, prefactor, R²,
                        saturating E, A, alpha, leave-largest-out error, all with intervals
  points.csv            every plotted score with its interval; results.csv: the tidy table;
                        errors.csv: error-taxonomy counts per checkpoint
  tables/*.csv|md|tex   scores, fits, examples needed, budget, error categories
  figures/*.png|pdf     fig1_scaling (panel grid), fig2_size_*, fig3_errors_*, fig_budget_*
                        (+ Facts100); names from --labels, look from --style
  report.md             all of the above on one page

examples:
  python -m analysis runs/paper
  python -m analysis plan --pilot runs/paper --half-width 0.02   # items and seeds needed
  python -m analysis runs/paper --out /tmp/an --n-boot 2000 --ci 0.95
  python -m analysis runs/paper --metric sah_gsm8k=exact_match,flexible-extract
  python -m analysis runs/paper --judge-url http://localhost:8000/v1 \\
      --judge-model Qwen/Qwen2.5-7B-Instruct        # adds the 'reasoning' error category

Method and parameter meanings: docs/analysis.md."""


class OptionError(ValueError):
    """Command-line options that do not fit together."""


def numbers(text: str, what: str) -> tuple[float, ...]:
    """An argparse type: comma-separated numbers, at least one (`analysis plan` uses it too)."""
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what}: expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"{what}: give at least one number")
    return values


def _targets(text: str) -> tuple[float, ...]:
    values = numbers(text, "--targets")
    if not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"targets must lie strictly between 0 and 1, got {text!r}")
    return values


def level(text: str) -> float:
    """An argparse type: an interval level in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ci: expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--ci must be in (0, 1), e.g. 0.9; got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = SahParser(
        prog="python -m analysis",
        description="Fit performance-vs-N power laws with intervals over evaluation items and\n"
        "training seeds, categorise GSM8K errors, and draw the study's figures and tables for\n"
        "a run directory (runs/<experiment>/<model>/<task>/n<N>[_seed<S>]/eval/<eval_task>/).\n"
        "`python -m analysis plan --help`: items and seeds needed for a target precision.",
        epilog=EPILOG,
    )
    p.add_argument("run_dir", type=Path, help="run directory (one experiment, or a folder of them)")
    p.add_argument("--out", type=Path, help=f"output folder (default: RUN_DIR/{ANALYSIS_DIR})")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--ci", type=level, default=0.90, help="interval level")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--metric",
        action="append",
        metavar="TASK=METRIC[,FILTER]",
        help="primary metric for an eval task (repeatable; TASK may be a glob)",
    )
    p.add_argument(
        "--targets",
        type=_targets,
        default=(0.5, 0.75),
        help="scores for 'examples needed'",
    )
    p.add_argument(
        "--error-tasks",
        default="*gsm8k*",
        help="eval tasks (glob) whose samples get the error taxonomy",
    )
    p.add_argument("--formats", default="png,pdf", help="figure formats")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first malformed/missing/partial file instead of warning",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--labels", type=Path, metavar="FILE",
        help="YAML of readable names for tasks, metrics, models (`python -m analysis.labels` "
        "prints the defaults to start from)",
    )  # fmt: skip
    p.add_argument(
        "--style", type=Path, metavar="FILE",
        help="matplotlib .mplstyle applied on top of the study's style (analysis/sah.mplstyle)",
    )  # fmt: skip
    j = p.add_argument_group("LLM judge (optional, any OpenAI-compatible endpoint)")
    j.add_argument("--judge-url", help="e.g. http://localhost:8000/v1 (vllm serve)")
    j.add_argument("--judge-model", help="model name the endpoint serves")
    j.add_argument(
        "--judge-api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key, if one is needed",
    )
    j.add_argument("--judge-workers", type=int, default=4, help="parallel requests")
    j.add_argument("--judge-cache", type=Path, help="reply cache (default OUT/judge_cache)")
    return p  # fmt: skip


def options_from_args(args: argparse.Namespace):
    from analysis.pipeline import Options

    run_dir = args.run_dir.expanduser().resolve()
    out = (args.out or run_dir / ANALYSIS_DIR).expanduser().resolve()
    metrics: dict[str, MetricKey] = dict(parse_metric_override(m) for m in args.metric or [])
    judge = None
    if bool(args.judge_url) != bool(args.judge_model):
        raise OptionError("--judge-url and --judge-model go together")
    if args.judge_url:
        judge = JudgeConfig(url=args.judge_url, model=args.judge_model,
                            cache_dir=args.judge_cache or out / "judge_cache",
                            api_key=os.environ.get(args.judge_api_key_env) or None,
                            workers=args.judge_workers, progress=not args.quiet)  # fmt: skip
    if args.n_boot < 10:
        raise OptionError(f"--n-boot {args.n_boot}: use at least 10 resamples (1000 recommended)")
    formats = tuple(f.strip().lower() for f in args.formats.split(",") if f.strip())
    if not formats:
        raise OptionError(
            f"--formats {args.formats!r}: give at least one figure format, e.g. png,pdf"
        )
    supported = sorted(_figure_formats())
    unknown = [f for f in formats if f not in supported]
    if unknown:
        raise OptionError(
            f"--formats: unknown figure format(s) {unknown}; expected some of {supported}"
        )
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {out} is a file; expected a folder (it is created if missing)")
    _check_looks(args.labels, args.style)
    return run_dir, Options(out=out, n_boot=args.n_boot, level=args.ci, seed=args.seed,
                            metrics=metrics, targets=args.targets, judge=judge,
                            error_tasks=args.error_tasks, formats=formats, strict=args.strict,
                            progress=not args.quiet, labels=args.labels,
                            style=args.style)  # fmt: skip


def _check_looks(labels: Path | None, style: Path | None) -> None:
    """A bad label or style file fails before the fitting, not after it."""
    from analysis.figures import FigureStyleError, paper_style
    from analysis.labels import LabelsError, load_labels

    try:
        load_labels(labels)
        if style is not None:
            with paper_style(style):
                pass
    except (LabelsError, FigureStyleError) as e:
        raise OptionError(str(e)) from None


def _figure_formats() -> set[str]:
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["plan"]:  # `python -m analysis plan ...` (a run dir named plan: ./plan)
        from analysis.plan import main as plan_main

        return plan_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from analysis.pipeline import analyse
    from analysis.tables import ci

    start = time.perf_counter()
    try:
        run_dir, opt = options_from_args(args)
        check_writable(opt.out)  # before the work: a read-only or full --out (creates nothing)
        out = analyse(run_dir, opt)
    except (
        OptionError,
        MetricError,
        ResultsError,
        RunLayoutError,
        FitError,
        JudgeError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a read-only --out: the path, and what is wrong
        message = write_error_message(e) if is_write_error(e) else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outputs are written atomically: nothing half-written is left
        print("interrupted; rerun to analyse again", file=sys.stderr)
        return 130
    print(f"analysed {out.run.table['checkpoint'].nunique()} checkpoints, "
          f"{len(out.fits)} curves in {time.perf_counter() - start:.1f}s")  # fmt: skip
    for _, r in out.fits_df.iterrows():
        if "inv_b" in r and r["inv_b"] == r["inv_b"]:
            print(f"  {r['model']:<24} {r['eval_task']:<22} 1/b = "
                  f"{ci(r['inv_b'], r['inv_b_lo'], r['inv_b_hi'])}")  # fmt: skip
    if out.run.warnings:
        print(f"{len(out.run.warnings)} warnings (listed in the report)")
    print(f"report: {out.report}")
    return 0

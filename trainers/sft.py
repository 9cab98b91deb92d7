"""Supervised fine-tuning at several data scales: one checkpoint per N, trained alike except for N.

    accelerate launch trainers/sft.py --config configs/demo/sft_tiny.yaml [--key value ...]
    python trainers/sft.py --config configs/demo/sft_tiny.yaml            # CPU, one process

For each N in `scales` this writes `runs/<experiment>/<model_slug>/<task>/n<N>/` (see
docs/architecture.md), and with `--seeds 42 1 2` also `n<N>_seed1/`, `n<N>_seed2/` (the config's
`seed` keeps the plain name; `n0` is one folder whatever the seeds): the checkpoint (merged, if LoRA; the adapter in `adapter/`), `sah_manifest.json`
and, last, `COMPLETED`. N=0 is a manifest pointing at the base model. Completed scales are skipped
on a rerun; an incomplete one is resumed from its last Trainer checkpoint if its recipe is
unchanged, else trained again from scratch.

The config is TRL's: every `SFTConfig` and `ModelConfig` field (learning_rate, max_steps,
use_peft, lora_r, ...) plus the `ScaleArguments` below, in one flat YAML; CLI flags override it.
Programmatic use: `run_sft(parse_args([...]))` trains every scale in-process and returns the dirs.
"""

from __future__ import annotations

from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file, e.g. by `accelerate launch`
    from trainers.config import unshadow_script_dir

    unshadow_script_dir(__file__)

import copy
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sah_tasks.common.oserrors import is_write_error, write_error_message
from trainers.common import (
    BaseModel,
    RunArguments,
    Unit,
    barrier,
    check_batch_options,
    check_one_unit_per_process,
    check_report_to,
    check_trains_something,
    check_writable,
    completed_unchanged,
    describe_run_base,
    end_process_group,
    load_model,
    name_unit_run,
    peft_config,
    run_seed,
    seed_folder,
    sft_records,
    snapshot,
    train_unit,
    training_seeds,
    with_training_seed,
    write_pointer_manifest,
)
from trainers.config import ConfigError, parse_dataclasses, parse_mapping, to_jsonable
from trainers.data import Pool, TrainDataError, load_sft_pool
from trainers.manifest import (
    ChatTemplateError,
    Manifest,
    ManifestPathError,
    chat_template_record,
    is_completed,
    portable_path,
)
from trainers.subsets import SubsetError, select_subset, subset_hash

log = logging.getLogger("trainers.sft")

USER_ERRORS = (ConfigError, TrainDataError, SubsetError, ManifestPathError, ChatTemplateError)


@dataclass
class ScaleArguments(RunArguments):
    """The data scales and the data (shared options: `RunArguments`; the rest is TRL's)."""

    scales: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "Data scales N (numbers of training examples); 0 is the base model."},
    )
    data_files: str | None = field(
        default=None,
        metadata={
            "help": "Local JSONL replacing the task's hub source (same schema, or prompt/completion)."
        },
    )
    data_revision: str | None = field(
        default=None, metadata={"help": "Override the pinned hub revision of the task's data."}
    )
    scale_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Training options that depend on N, as {N: {option: value}}, e.g. "
            '\'{"100": {"num_train_epochs": 10}}\'. Everything else is identical at every N.'
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.scales:
            raise ConfigError("scales: give at least one data scale")
        if any(n < 0 for n in self.scales):
            raise ConfigError(f"scales: data scales must be >= 0, got {self.scales}")
        self.scales = sorted(set(self.scales))
        overrides = parse_mapping(self.scale_overrides, "scale_overrides")
        try:
            self.scale_overrides = {
                int(n): parse_mapping(v, f"scale_overrides[{n}]") for n, v in overrides.items()
            }
        except ValueError as e:
            raise ConfigError(
                f"scale_overrides: keys must be data scales (integers): {e}"
            ) from None


@dataclass
class SFTRun:
    """A parsed SFT config: our arguments, TRL's SFTConfig and ModelConfig."""

    scale: ScaleArguments
    training: Any  # trl.SFTConfig
    model: Any  # trl.ModelConfig
    config_seed: int | None = None  # the config's `seed`: its checkpoints keep the plain n<N>

    def __post_init__(self) -> None:
        if self.config_seed is None:
            self.config_seed = self.training.seed

    @property
    def seed(self) -> int:
        return run_seed(self.scale, self.training)


def seed_runs(run: SFTRun) -> list[SFTRun]:
    """One run per training seed (`--seeds`); each draws its own nested subsets."""
    return [
        replace(run, training=with_training_seed(run.training, s))
        for s in training_seeds(run.scale, run.training)
    ]


def parse_args(argv: Sequence[str] | None = None, *, check_hardware: bool = True) -> SFTRun:
    """Parse `--config FILE` and CLI overrides (default: `sys.argv[1:]`); `check_hardware=False`
    plans without training (a bf16 config on a CPU login node)."""
    from trl import ModelConfig, SFTConfig

    scale, training, model = parse_dataclasses(
        (ScaleArguments, SFTConfig, ModelConfig),
        argv,
        prog="trainers/sft.py",
        description=__doc__.split("\n\n")[0],
        check_hardware=check_hardware,
    )
    check_report_to(training)
    run = SFTRun(scale, training, model)
    check_overrides(run.scale.scale_overrides, type(run.training))
    for n in run.scale.scales:  # the effective options of each scale (with its overrides)
        if n > 0:
            args = scale_training_args(run, n, Path("."))
            check_trains_something(args)
            check_batch_options(args)
    return run


def check_overrides(overrides: dict[int, dict], config_type: type) -> None:
    valid = {f.name for f in fields(config_type)}
    for n, options in overrides.items():
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(f"scale_overrides[{n}]: unknown training option(s) {unknown}")


def scale_dir(run: SFTRun, base: BaseModel, n: int) -> Path:
    """`n<N>` (the config's seed, and always n0, which trains nothing) or `n<N>_seed<S>`."""
    name = "n0" if n == 0 else seed_folder(f"n{n}", run.training.seed, run.config_seed)
    return experiment_root(run) / base.slug / run.scale.task / name


def describe_run_model(run: SFTRun) -> BaseModel:
    return describe_run_base(run.scale, run.model, run.training)


def load_pool(run: SFTRun) -> Pool:
    return load_sft_pool(run.scale.task, run.scale.data_files, run.scale.data_revision)


def run_sft(run: SFTRun) -> list[Path]:
    """Train (or skip, if completed) every scale of `run` in this process; return their dirs."""
    check_writable(experiment_root(run), f"output_root {run.scale.output_root}")
    base = describe_run_model(run)
    pool = load_pool(run)
    runs = seed_runs(run)
    trained = [n for n in run.scale.scales if n > 0]
    for seeded in runs:  # fail before training anything
        for n in trained:
            select_subset(pool.examples, n, seeded.seed, pool_name=_pool_name(pool))
    pending = [
        scale_dir(seeded, base, n).name
        for seeded in runs
        for n in trained
        if not is_completed(scale_dir(seeded, base, n))
    ]
    check_one_unit_per_process(
        pending, run.training, hint="`--scales 100 --seeds 42`, then `--scales 500`, ..."
    )
    log.info(
        "%s/%s: %d scales x %d seeds, %d to train",
        base.slug,
        run.scale.task,
        len(run.scale.scales),
        len(runs),
        len(pending),
    )
    # n0 is the base model: one folder, recorded with the config's seed, whatever the seeds
    dirs = [train_scale(run, pool, base, 0)] if 0 in run.scale.scales else []
    return dirs + [train_scale(seeded, pool, base, n) for seeded in runs for n in trained]


@dataclass
class ScalePlan:
    """Scale `n` as it is asked for: where, on which examples, with what recipe."""

    run_dir: Path
    subset: list[Any]
    args: Any  # the SFTConfig of this scale
    manifest: Manifest


def plan_scale(run: SFTRun, pool: Pool, base: BaseModel, n: int) -> ScalePlan:
    run_dir = scale_dir(run, base, n)
    subset = select_subset(pool.examples, n, run.seed, pool_name=_pool_name(pool))
    args = scale_training_args(run, n, run_dir)
    manifest = Manifest(
        experiment=run.scale.experiment,
        model_slug=base.slug,
        base_model=portable_path(base.name, run_dir, experiment_root(run)),
        base_revision=base.revision,
        family=base.family,
        size_b=base.size_b,
        task=run.scale.task,
        n=n,
        seed=run.training.seed,  # the training seed (the subset seed is config.subset.seed)
        stage="sft" if n > 0 else "base",
        model_path=_model_path(run, base, run_dir, n),
        lora=bool(run.model.use_peft) and n > 0,
        train_data=pool.train_data(),
        subset_hash=subset_hash(ex.id for ex in subset),
        config=unit_config(run, args, n, len(pool.examples)),
    )
    return ScalePlan(run_dir, list(subset), args, manifest)


def is_current(run: SFTRun, plan: ScalePlan) -> bool:
    """Completed with this recipe (skip); a completed scale with another recipe is an error,
    or with `overwrite` is set aside and trained again."""
    return completed_unchanged(
        plan.run_dir, plan.manifest, run.scale.overwrite, experiment_root(run)
    )


def train_scale(run: SFTRun, pool: Pool, base: BaseModel, n: int) -> Path:
    """Train scale `n` unless it is completed with this recipe; return its run directory."""
    plan = plan_scale(run, pool, base, n)
    done = is_current(run, plan)
    # Every rank decides before rank 0 can mark this scale completed (n0 is marked at once):
    # a rank that looked later would skip the unit's barriers and deadlock the others.
    barrier()
    if done:
        log.info("%s is completed with this recipe; skipping", plan.run_dir)
        return plan.run_dir
    if n == 0:
        write_pointer_manifest(plan.run_dir, plan.manifest)
        return plan.run_dir
    log.info("training %s on %d examples", plan.run_dir, n)
    unit = Unit.of(run.scale, plan.run_dir, plan.manifest, run.model, plan.args)
    train_unit(unit, lambda tokenizer: build_trainer(run, plan.args, plan.subset, tokenizer))
    return plan.run_dir


def build_trainer(run: SFTRun, args: Any, subset: Sequence[Any], tokenizer):
    """The TRL SFTTrainer for one scale (public so tests can inspect its collated batches)."""
    from datasets import Dataset
    from trl import SFTTrainer

    model = load_model(run.model, args, tokenizer)
    dataset = Dataset.from_list(sft_records(subset, run.scale.prompt_format))
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(run.model),
    )


def unit_config(run: SFTRun, args: Any, n: int, pool_size: int) -> dict[str, Any]:
    """The recipe of scale `n` alone (not the list of scales), as recorded in its manifest."""
    config = snapshot(scale=run.scale, training=args, model=run.model)
    for key in ("scales", "scale_overrides"):
        config["scale"].pop(key)
    config["scale"]["scale_override"] = to_jsonable(run.scale.scale_overrides.get(n, {}))
    config["subset"] = {"n": n, "seed": run.seed, "pool_size": pool_size}
    config["chat_template"] = chat_template_record(args.chat_template_path)
    return config


def scale_training_args(run: SFTRun, n: int, run_dir: Path):
    """The training arguments of scale `n`: the shared ones, plus that scale's overrides."""
    args = copy.deepcopy(run.training)
    name_unit_run(args, run.scale.experiment, run_dir, run.scale.task)
    for key, value in run.scale.scale_overrides.get(n, {}).items():
        setattr(args, key, value)
    return args


def _model_path(run: SFTRun, base: BaseModel, run_dir: Path, n: int) -> str:
    """What to serve: the checkpoint itself (`.`; merged, for LoRA), or the base model (N=0)."""
    if n == 0 or (run.model.use_peft and not run.scale.merge_lora):
        return portable_path(base.name, run_dir, experiment_root(run))
    return "."


def experiment_root(run: SFTRun) -> Path:
    return Path(run.scale.output_root) / run.scale.experiment


def _pool_name(pool: Pool) -> str:
    return f"{pool.task} training pool ({pool.source})"


def run_main(train: Callable[[Any], list[Path]], parse: Callable[[Any], Any], argv) -> list[Path]:
    """The command line of a trainer: a user's mistake, a full disk or Ctrl-C is one line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return train(parse(argv))
    except USER_ERRORS as e:
        raise SystemExit(f"error: {e}") from None
    except OSError as e:  # the disk filled up, or the output went read-only, while writing
        if not is_write_error(e):
            raise
        raise SystemExit(f"error: {write_error_message(e)}") from None
    except KeyboardInterrupt:  # completed scales are kept; the interrupted one resumes
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        end_process_group()


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return run_main(run_sft, parse_args, argv)


if __name__ == "__main__":
    main()

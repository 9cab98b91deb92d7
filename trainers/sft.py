"""Supervised fine-tuning at several data scales: one checkpoint per N, trained alike except for N.

    accelerate launch trainers/sft.py --config configs/demo/sft_tiny.yaml [--key value ...]
    python trainers/sft.py --config configs/demo/sft_tiny.yaml            # CPU, one process

For each N in `scales` this writes `runs/<experiment>/<model_slug>/<task>/n<N>/` (see
ARCHITECTURE.md): the checkpoint (merged, if LoRA; the adapter in `adapter/`), `sah_manifest.json`
and, last, `COMPLETED`. N=0 is a manifest pointing at the base model. Completed scales are skipped
on a rerun; an incomplete one is resumed from its last Trainer checkpoint if its recipe is
unchanged, else trained again from scratch.

The config is TRL's: every `SFTConfig` and `ModelConfig` field (learning_rate, max_steps,
use_peft, lora_r, ...) plus the `ScaleArguments` below, in one flat YAML; CLI flags override it.
Programmatic use: `run_sft(parse_args([...]))` trains every scale in-process and returns the dirs.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file: drop `trainers/` from the path so its modules (data, config...) cannot shadow
    # top-level packages; the installed `trainers` package is imported instead.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from trainers.common import (
    BaseModel,
    check_one_unit_per_process,
    check_prompt_format,
    describe_base_model,
    fingerprint,
    finish_run_dir,
    load_model,
    load_tokenizer,
    peft_config,
    prepare_run_dir,
    release,
    save_trained,
    sft_records,
    snapshot,
    write_pointer_manifest,
)
from trainers.config import ConfigError, parse_dataclasses, parse_mapping, to_jsonable
from trainers.data import Pool, TrainDataError, load_sft_pool
from trainers.manifest import Manifest, is_completed
from trainers.subsets import SubsetError, select_subset, subset_hash

log = logging.getLogger("trainers.sft")

USER_ERRORS = (ConfigError, TrainDataError, SubsetError)


@dataclass
class ScaleArguments:
    """What to train on and where to write it (every other option is TRL's)."""

    experiment: str = field(
        default="default", metadata={"help": "Experiment name (runs/<experiment>/)."}
    )
    task: str = field(
        default="gsm8k",
        metadata={
            "help": "Training task: gsm8k, multihop, coding, ifeval, facts100_documents, facts100_qa."
        },
    )
    scales: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "Data scales N (numbers of training examples); 0 is the base model."},
    )
    output_root: str = field(default="runs", metadata={"help": "Root of the run directories."})
    data_files: str | None = field(
        default=None,
        metadata={
            "help": "Local JSONL replacing the task's hub source (same schema, or prompt/completion)."
        },
    )
    data_revision: str | None = field(
        default=None, metadata={"help": "Override the pinned hub revision of the task's data."}
    )
    subset_seed: int | None = field(
        default=None, metadata={"help": "Seed of the nested subsets (default: the training seed)."}
    )
    prompt_format: str = field(
        default="plain",
        metadata={
            "help": "'plain': `Question: ...\\nAnswer:` + ` answer` + EOS (base models); 'chat': the "
            "same prompt as the user turn of the tokenizer's chat template (chat models).",
            "choices": ["plain", "chat"],
        },
    )
    model_slug: str | None = field(
        default=None, metadata={"help": "Folder name of the model (default: from its name)."}
    )
    model_family: str | None = field(
        default=None, metadata={"help": "Model family for the analysis, e.g. 'llama-3'."}
    )
    model_size_b: float | None = field(
        default=None, metadata={"help": "Size in billions of parameters (default: counted)."}
    )
    scale_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Training options that depend on N, as {N: {option: value}}, e.g. "
            '\'{"100": {"num_train_epochs": 10}}\'. Everything else is identical at every N.'
        },
    )
    merge_lora: bool = field(
        default=True,
        metadata={"help": "With LoRA, also save base+adapter merged (what vLLM/lm-eval serve)."},
    )
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "Keep the Trainer's intermediate checkpoint-* folders."}
    )
    resume: bool = field(
        default=True,
        metadata={
            "help": "Resume an incomplete scale from its last checkpoint if the recipe is unchanged."
        },
    )

    def __post_init__(self) -> None:
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

    @property
    def seed(self) -> int:
        return self.scale.subset_seed if self.scale.subset_seed is not None else self.training.seed


def parse_args(argv: Sequence[str] | None = None) -> SFTRun:
    """Parse `--config FILE` and CLI overrides (default: `sys.argv[1:]`)."""
    from trl import ModelConfig, SFTConfig

    scale, training, model = parse_dataclasses(
        (ScaleArguments, SFTConfig, ModelConfig), argv, prog="trainers/sft.py"
    )
    run = SFTRun(scale, training, model)
    check_overrides(run.scale.scale_overrides, type(run.training))
    return run


def check_overrides(overrides: dict[int, dict], config_type: type) -> None:
    valid = {f.name for f in fields(config_type)}
    for n, options in overrides.items():
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(f"scale_overrides[{n}]: unknown training option(s) {unknown}")


def scale_dir(run: SFTRun, base: BaseModel, n: int) -> Path:
    return Path(run.scale.output_root) / run.scale.experiment / base.slug / run.scale.task / f"n{n}"


def describe_run_model(run: SFTRun) -> BaseModel:
    return describe_base_model(
        run.model,
        trust_remote_code=run.training.trust_remote_code,
        slug=run.scale.model_slug,
        family=run.scale.model_family,
        size_b=run.scale.model_size_b,
    )


def load_pool(run: SFTRun) -> Pool:
    return load_sft_pool(run.scale.task, run.scale.data_files, run.scale.data_revision)


def run_sft(run: SFTRun) -> list[Path]:
    """Train (or skip, if completed) every scale of `run` in this process; return their dirs."""
    base = describe_run_model(run)
    pool = load_pool(run)
    for n in run.scale.scales:  # fail before training anything
        select_subset(pool.examples, n, run.seed, pool_name=_pool_name(pool))
    pending = [
        f"n{n}" for n in run.scale.scales if n > 0 and not is_completed(scale_dir(run, base, n))
    ]
    check_one_unit_per_process(
        pending, run.training, hint="`--scales 100`, then `--scales 500`, ..."
    )
    log.info(
        "%s/%s: %d scales, %d to train",
        base.slug,
        run.scale.task,
        len(run.scale.scales),
        len(pending),
    )
    return [train_scale(run, pool, base, n) for n in run.scale.scales]


def train_scale(run: SFTRun, pool: Pool, base: BaseModel, n: int) -> Path:
    """Train scale `n` unless it is completed; return its run directory."""
    run_dir = scale_dir(run, base, n)
    if is_completed(run_dir):
        log.info("%s is completed; skipping", run_dir)
        return run_dir
    subset = select_subset(pool.examples, n, run.seed, pool_name=_pool_name(pool))
    args = scale_training_args(run, n, run_dir)
    config = unit_config(run, args, n, len(pool.examples))
    lora = bool(run.model.use_peft) and n > 0
    manifest = Manifest(
        experiment=run.scale.experiment,
        model_slug=base.slug,
        base_model=base.name,
        base_revision=base.revision,
        family=base.family,
        size_b=base.size_b,
        task=run.scale.task,
        n=n,
        seed=run.seed,
        stage="sft" if n > 0 else "base",
        model_path=_model_path(run, base, run_dir, n),
        lora=lora,
        train_data=pool.train_data(),
        subset_hash=subset_hash(ex.id for ex in subset),
        config=config,
    )
    if n == 0:
        write_pointer_manifest(run_dir, manifest)
        return run_dir
    log.info("training %s on %d examples", run_dir, n)
    resume_from = prepare_run_dir(run_dir, fingerprint(config), run.scale.resume)
    tokenizer = load_tokenizer(run.model, run.training.trust_remote_code)
    check_prompt_format(run.scale.prompt_format, tokenizer)
    trainer = build_trainer(run, args, subset, tokenizer)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    save_trained(trainer, run_dir, lora)
    release(trainer)
    merge = (run.model, args) if lora and run.scale.merge_lora else None
    finish_run_dir(
        run_dir,
        manifest,
        tokenizer=tokenizer,
        merge=merge,
        keep_checkpoints=run.scale.keep_checkpoints,
    )
    return run_dir


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
    return config


def scale_training_args(run: SFTRun, n: int, run_dir: Path):
    """The training arguments of scale `n`: the shared ones, plus that scale's overrides."""
    args = copy.deepcopy(run.training)
    args.output_dir = str(run_dir)
    args.run_name = f"{run.scale.experiment}/{run_dir.parent.parent.name}/{run.scale.task}/n{n}"
    for key, value in run.scale.scale_overrides.get(n, {}).items():
        setattr(args, key, value)
    return args


def _model_path(run: SFTRun, base: BaseModel, run_dir: Path, n: int) -> str:
    """What to serve: the checkpoint itself (merged, for LoRA), or the base model (N=0)."""
    if n == 0 or (run.model.use_peft and not run.scale.merge_lora):
        return base.name
    return str(run_dir.resolve())


def _pool_name(pool: Pool) -> str:
    return f"{pool.task} training pool ({pool.source})"


def main(argv: Sequence[str] | None = None) -> list[Path]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return run_sft(parse_args(argv))
    except USER_ERRORS as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()

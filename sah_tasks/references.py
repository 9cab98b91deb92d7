"""Reference models in a run directory: hub baselines and intermediate Trainer checkpoints.

`sah-eval sweep RUN_DIR --models SPEC ...` gives each extra model a folder of its own with a
generated manifest that says what it is (`stage: reference`, and `reference: {kind, ...}`), so
the sweep evaluates it like any checkpoint (once, resumably, into its own `eval/`) and the
analysis draws it as a reference line beside the N curves instead of a point on them.

    SPEC                                       folder                              kind
    meta-llama/Meta-Llama-3-8B-Instruct[@rev]  <slug>/reference/hub/               hub
    runs/exp/llama/gsm8k/n1000/checkpoint-200  llama/gsm8k/n1000-step200/          trainer_checkpoint
    /models/my-instruct                        <slug>/reference/local/             local

A Trainer checkpoint of a LoRA run holds only the adapter: its reference folder links it as
`adapter/` on the run's base model, so it is scored as base + that adapter.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from sah_tasks.eval_settings import prompt_format
from trainers.config import slugify
from trainers.manifest import (
    MANIFEST_NAME,
    atomic_write_text,
    is_completed,
    mark_completed,
    read_manifest,
)

STAGE = "reference"
_STEP = re.compile(r"^checkpoint-(?P<step>\d+)$")


class ReferenceError(ValueError):
    """A --models entry that cannot be registered."""


def register(run_dir: Path, spec: str, prompt_format: str = "plain") -> Path:
    """Create (or reuse, if identical) the reference folder of `spec`; returns it."""
    folder, manifest = _describe(Path(run_dir), spec, prompt_format)
    adapter = manifest.pop("_adapter", None)
    if (folder / MANIFEST_NAME).is_file():
        old = read_manifest(folder)
        if {k: old.get(k) for k in manifest} != manifest:
            raise ReferenceError(
                f"--models {spec}: {folder} already holds a different reference "
                f"({old.get('reference')}); remove it or use another run directory"
            )
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if adapter is not None and not (folder / "adapter").exists():
        os.symlink(os.path.relpath(adapter, folder), folder / "adapter")
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True))
    mark_completed(folder)
    return folder


def _describe(run_dir: Path, spec: str, prompt_format: str) -> tuple[Path, dict[str, Any]]:
    base = {"schema_version": 1, "experiment": run_dir.name, "stage": STAGE, "n": None,
            "seed": None, "lora": False,
            "config": {"scale": {"prompt_format": prompt_format}}}  # fmt: skip
    local = Path(spec).expanduser()
    if local.exists():
        step = _STEP.match(local.name)
        if step and run_dir.resolve() in local.resolve().parents:
            return _trainer_checkpoint(run_dir, local.resolve(), int(step["step"]), base)
        if not (local / "config.json").is_file():
            raise ReferenceError(f"--models {spec}: not a model folder (no config.json)")
        slug = slugify(local.name)
        folder = run_dir / slug / STAGE / "local"
        path = str(local.resolve())
        return folder, {**base, "model_slug": slug, "task": STAGE, "model_path": path,
                        "base_model": path, "base_revision": None,
                        "reference": {"kind": "local", "source": path}}  # fmt: skip
    hub_id, _, revision = spec.partition("@")
    if hub_id.count("/") != 1 or not all(hub_id.split("/")):
        raise ReferenceError(
            f"--models {spec}: not a local folder, and not a hub id 'org/name[@revision]'"
        )
    slug = slugify(hub_id.split("/")[1])
    folder = run_dir / slug / STAGE / "hub"
    return folder, {**base, "model_slug": slug, "task": STAGE, "model_path": hub_id,
                    "base_model": hub_id, "base_revision": revision or None,
                    "reference": {"kind": "hub", "source": hub_id,
                                  "revision": revision or None}}  # fmt: skip


def _trainer_checkpoint(run_dir: Path, ckpt: Path, step: int, base: dict) -> tuple[Path, dict]:
    """`.../n1000/checkpoint-200` -> `.../n1000-step200/`, same model and task as n1000."""
    scale = ckpt.parent
    try:
        rel = scale.relative_to(run_dir.resolve())
    except ValueError:
        raise ReferenceError(f"--models {ckpt}: a Trainer checkpoint outside {run_dir}") from None
    if not is_completed(scale):
        raise ReferenceError(
            f"--models {ckpt}: its run {scale} is not completed (no manifest yet); evaluate it "
            "when it is, or keep its checkpoints with keep_checkpoints: true"
        )
    parent = read_manifest(scale)
    folder = run_dir / rel.parent / f"{scale.name}-step{step}"
    manifest = {**base, "model_slug": parent.get("model_slug"), "task": parent.get("task"),
                "base_model": parent.get("base_model"),
                "base_revision": parent.get("base_revision"),
                "config": {"scale": {"prompt_format": prompt_format(parent) or "plain"}},
                "reference": {"kind": "trainer_checkpoint", "of": scale.name, "step": step}}  # fmt: skip
    if (parent.get("base_model") or "").startswith("."):  # relative to the scale folder
        manifest["base_model"] = os.path.relpath(scale / parent["base_model"], folder)
    if (ckpt / "adapter_config.json").is_file():  # LoRA: the adapter on the run's base model
        manifest.update(lora=True, model_path=manifest["base_model"], _adapter=str(ckpt))
    else:
        manifest["model_path"] = os.path.relpath(ckpt, folder.resolve())
    return folder, manifest

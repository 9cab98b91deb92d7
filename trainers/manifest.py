"""`sah_manifest.json` and the `COMPLETED` marker of a run directory (see ARCHITECTURE.md).

The manifest says what a checkpoint is (N, seed, base model, task, data and subset hashes, full
config, library versions, git sha); `COMPLETED` is written after everything else, so a folder
without it is incomplete and will be redone. Both are written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1
MANIFEST_NAME = "sah_manifest.json"
COMPLETED_NAME = "COMPLETED"
Stage = Literal["base", "sft", "dpo", "sft+dpo"]

_VERSIONED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sah")


@dataclass
class Manifest:
    experiment: str
    model_slug: str
    base_model: str
    base_revision: str | None
    family: str | None
    size_b: float | None
    task: str
    n: int
    seed: int
    stage: Stage
    model_path: str
    lora: bool
    train_data: dict[str, Any]
    subset_hash: str
    config: dict[str, Any]
    budget: int | None = None
    sft_fraction: float | None = None
    versions: dict[str, str | None] = field(default_factory=lambda: library_versions())
    git_sha: str | None = field(default_factory=lambda: git_sha())
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_manifest(run_dir: Path, manifest: Manifest) -> Path:
    path = run_dir / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True, default=str))
    return path


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest (is {run_dir} a run directory?)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg})") from None


def mark_completed(run_dir: Path) -> None:
    atomic_write_text(run_dir / COMPLETED_NAME, datetime.now(UTC).isoformat(timespec="seconds"))


def is_completed(run_dir: Path) -> bool:
    return (run_dir / COMPLETED_NAME).is_file()


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha() -> str | None:
    """The commit of the checkout this code runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

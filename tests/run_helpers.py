"""Hand-made checkpoint folders for the sweep tests (a manifest and COMPLETED, no training)."""

from __future__ import annotations

import json
from pathlib import Path


def write_checkpoint(folder: Path, n: int, model_path: str, **extra) -> Path:
    """A completed checkpoint of model `tiny` on gsm8k, as the trainers would describe it."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": 1, "experiment": "exp", "model_slug": "tiny", "task": "gsm8k",
                "n": n, "seed": 0, "model_path": model_path, "base_model": model_path,
                "lora": False, "stage": "base" if n == 0 else "sft", **extra}  # fmt: skip
    (folder / "sah_manifest.json").write_text(json.dumps(manifest))
    (folder / "COMPLETED").write_text("")
    return folder

"""Foundation demo: score a tiny model built on the spot on the shipped sample data.

Runs the real `sah-eval` CLI (HF backend, CPU) on every core task with local sample files and
prints lm-eval's results table. Nothing is downloaded. The full pipeline demo replaces this once
trainers and analysis exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = {
    "SAH_GSM8K_DATA": "tests/fixtures/gsm8k_test.jsonl",
    "SAH_IFEVAL_DATA": "tests/fixtures/ifeval_sample.jsonl",
    "SAH_MULTIHOP_DATA": "tests/fixtures/multihop_hotpotqa.jsonl",
}


def main() -> int:
    from trainers.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="sah-demo-"))
    print(f"[demo] building a tiny random Llama in {work / 'model'}", flush=True)
    model = build_tiny_model(work / "model")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.update({k: str(REPO / v) for k, v in SAMPLES.items()})
    cmd = [
        str(Path(sys.executable).parent / "sah-eval"),
        "--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu",
        "--tasks", "sah_gsm8k,sah_gsm8k_fewshot,sah_ifeval,sah_multihop",
        "--gen_kwargs", "max_gen_toks=48", "--output_path", str(work / "eval"),
    ]  # fmt: skip
    print("[demo] " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, env=env)
    print(f"[demo] results written under {work / 'eval'}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep vs one lm_eval process per (checkpoint, task).

    python benchmarks/bench_sweep.py [--checkpoints 4] [--limit 4]

Builds 4 tiny checkpoints x 2 tasks (sah_gsm8k, sah_multihop on the test fixtures), then times
  A. one `sah-eval sweep` process (task index built once, each model loaded once), and
  B. one `lm_eval --include_path ...` CLI process per (checkpoint, task) — the naive loop,
and prints both wall times and the ratio B / A. Both produce the same results files; A wins by
not paying interpreter start-up, imports, task indexing and model loading per unit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TASKS = ["sah_gsm8k", "sah_multihop"]
ENV = {
    "SAH_GSM8K_DATA": str(REPO / "tests/fixtures/gsm8k_test.jsonl"),
    "SAH_MULTIHOP_DATA": str(REPO / "tests/fixtures/multihop_hotpotqa.jsonl"),
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
}


def make_run_dir(root: Path, n_ckpt: int) -> Path:
    from trainers.tiny_model import build_tiny_model

    model = build_tiny_model(root / "tiny")
    run = root / "runs" / "bench"
    for i in range(n_ckpt):
        ckpt = run / "tiny" / "gsm8k" / f"n{2**i}"
        shutil.copytree(model, ckpt)
        manifest = {"schema_version": 1, "n": 2**i, "model_path": ".", "lora": False}
        (ckpt / "sah_manifest.json").write_text(json.dumps(manifest))
        (ckpt / "COMPLETED").write_text("")
    return run


def timed(cmds: list[list[str]]) -> float:
    env = dict(os.environ, **ENV)
    t0 = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoints", type=int, default=4)
    p.add_argument("--limit", type=int, default=4)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    run = make_run_dir(root, args.checkpoints)
    common = ["--device", "cpu", "--batch_size", "4", "--limit", str(args.limit),
              "--gen_kwargs", "max_gen_toks=16"]  # fmt: skip
    sweep = [[str(BIN / "sah-eval"), "sweep", str(run), "--tasks", ",".join(TASKS),
              "--dtype", "float32", *common]]  # fmt: skip
    naive = [
        [str(BIN / "lm_eval"), "--include_path", str(REPO / "sah_tasks"), "--model", "hf",
         "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", task,
         "--output_path", str(ckpt / "naive" / task), "--log_samples", *common]
        for ckpt in sorted((run / "tiny" / "gsm8k").iterdir()) for task in TASKS
    ]  # fmt: skip
    units = args.checkpoints * len(TASKS)
    t_sweep = timed(sweep)
    t_naive = timed(naive)
    print(
        f"units: {args.checkpoints} checkpoints x {len(TASKS)} tasks = {units}, --limit {args.limit}"
    )
    print(f"sah-eval sweep (1 process):        {t_sweep:7.1f} s  ({t_sweep / units:.1f} s/unit)")
    print(
        f"lm_eval per unit ({units} processes):   {t_naive:7.1f} s  ({t_naive / units:.1f} s/unit)"
    )
    print(f"speed-up (naive / sweep):          {t_naive / t_sweep:7.2f}x")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

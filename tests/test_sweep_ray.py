"""`sah-eval sweep --ray` against a real Ray instance on this machine (hf backend on CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import ray

from sah_tasks import sweep


def _checkpoint(folder: Path, n: int, model_path: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": 1, "n": n, "model_path": model_path, "base_model": model_path,
                "lora": False}  # fmt: skip
    (folder / "sah_manifest.json").write_text(json.dumps(manifest))
    (folder / "COMPLETED").write_text("")
    return folder


def test_without_a_cluster_the_error_says_how_to_start_one(monkeypatch):
    ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(sweep.SweepError, match=r"ray start --head.*--ray_address local"):
        sweep._connect_ray("auto")


def test_ray_sweep_scores_every_checkpoint_and_reports_a_broken_one(
    tiny_model_dir, tmp_path, fixtures_dir, monkeypatch, capsys
):
    root = tmp_path / "runs" / "exp"
    _checkpoint(root / "tiny/gsm8k/n0", 0, str(tiny_model_dir))
    shutil.copytree(tiny_model_dir, root / "tiny/gsm8k/n8")
    _checkpoint(root / "tiny/gsm8k/n8", 8, ".")
    broken = shutil.copytree(tiny_model_dir, root / "tiny/gsm8k/n16")
    (broken / "config.json").write_text("{not json")
    _checkpoint(broken, 16, ".")
    # workers get the data location through the runtime environment the sweep gives Ray
    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    argv = [str(root), "--tasks", "sah_gsm8k", "--backend", "hf", "--device", "cpu",
            "--dtype", "float32", "--limit", "2", "--gen_kwargs", "max_gen_toks=8",
            "--batch_size", "2", "--ray", "--ray_address", "local"]  # fmt: skip
    try:
        assert sweep.main(argv) == 1  # one checkpoint failed
    finally:
        ray.shutdown()
    out, err = capsys.readouterr()
    assert "2 evaluated, 0 already done, 1 failed, 0 stale, 0 busy, 2 model load(s)" in out
    assert "FAILED tiny/gsm8k/n16 sah_gsm8k: model load failed" in err
    for n in (0, 8):
        assert list((root / f"tiny/gsm8k/n{n}/eval/sah_gsm8k").glob("results_*.json"))
    assert not (broken / "eval" / "sah_gsm8k").exists()

"""Several training seeds, end to end: the trainer lays them out, the sweep scores every seed's
checkpoint, and the analysis builds one curve per model from all of them."""

from __future__ import annotations

import pandas as pd
from trainer_helpers import (
    one_torch_thread,  # noqa: F401
    sft_argv,
)

from trainers import sft


def test_seeds_are_trained_swept_and_combined(tiny_model_dir, tmp_path, fixtures_dir, monkeypatch):
    from analysis import cli as analysis_cli
    from sah_tasks.cli import main as sah_eval

    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "16", "--seeds", "0", "5",
                    "--max_steps", "1")  # fmt: skip
    dirs = sft.run_sft(sft.parse_args(argv))
    assert sorted(d.name for d in dirs) == ["n0", "n16", "n16_seed5", "n8", "n8_seed5"]
    run_dir = tmp_path / "test"

    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    try:
        code = sah_eval(["sweep", str(run_dir), "--tasks", "sah_gsm8k", "--backend", "hf",
                         "--device", "cpu", "--dtype", "float32", "--batch_size", "4",
                         "--limit", "4",
                         "--gen_kwargs", "max_gen_toks=8"])  # fmt: skip
    except SystemExit as e:  # sah-eval exits like lm_eval does
        code = e.code
    assert code in (0, None)
    for d in dirs:  # every seed's checkpoint was scored
        assert list((d / "eval" / "sah_gsm8k").glob("results_*.json")), d

    assert analysis_cli.main([str(run_dir), "--n-boot", "20", "--formats", "png", "--quiet"]) == 0
    points = pd.read_csv(run_dir / "analysis" / "points.csv")
    seeds = dict(zip(points["n"], points["n_seeds"], strict=True))
    assert seeds == {0: 1, 8: 2, 16: 2}  # one curve: N=0 seed-free, two seeds per trained N
    fits = pd.read_csv(run_dir / "analysis" / "fits.csv")
    assert len(fits) == 1 and fits["n_seeds_max"].item() == 2

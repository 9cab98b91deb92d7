"""`sah-eval sweep --models`: hub baselines and Trainer checkpoints as reference models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_helpers import write_checkpoint

from sah_tasks import references, sweep


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir) -> Path:
    root = tmp_path / "runs" / "exp"
    write_checkpoint(root / "tiny/gsm8k/n0", 0, str(tiny_model_dir))
    scale = shutil.copytree(tiny_model_dir, root / "tiny/gsm8k/n8")
    write_checkpoint(scale, 8, ".", base_model=str(tiny_model_dir))
    shutil.copytree(tiny_model_dir, scale / "checkpoint-2")  # kept with keep_checkpoints
    return root


def test_each_kind_of_reference_gets_a_manifest_that_serves_it(run_dir, tiny_model_dir, tmp_path):
    hub = references.register(run_dir, "org/Baseline-Instruct@abc123", prompt_format="chat")
    assert hub == run_dir / "baseline-instruct" / "reference" / "hub"
    ckpt = references.register(run_dir, str(run_dir / "tiny/gsm8k/n8/checkpoint-2"))
    assert ckpt == run_dir / "tiny/gsm8k/n8-step2"
    local = references.register(run_dir, str(tiny_model_dir))
    found = {c.rel: c for c in sweep.discover(run_dir)}
    s = found["baseline-instruct/reference/hub"].serving()
    assert (s.weights, s.revision, s.adapter) == ("org/Baseline-Instruct", "abc123", None)
    assert found["baseline-instruct/reference/hub"].manifest["config"]["scale"] == {
        "prompt_format": "chat"}  # fmt: skip
    assert found["tiny/gsm8k/n8-step2"].serving().weights == str(
        (run_dir / "tiny/gsm8k/n8/checkpoint-2").resolve())  # fmt: skip
    assert found[local.relative_to(run_dir).as_posix()].serving().weights == str(tiny_model_dir)
    meta = found["tiny/gsm8k/n8-step2"].manifest
    assert meta["stage"] == "reference" and meta["reference"] == {
        "kind": "trainer_checkpoint", "of": "n8", "step": 2}  # fmt: skip
    # registering again is a no-op; another model in the same place is an error
    assert references.register(run_dir, "org/Baseline-Instruct@abc123", "chat") == hub
    with pytest.raises(references.ReferenceError, match="already holds a different reference"):
        references.register(run_dir, "org/Baseline-Instruct@other", "chat")


def test_a_lora_trainer_checkpoint_is_its_adapter_on_the_base(run_dir, tiny_model_dir):
    ckpt = run_dir / "tiny/gsm8k/n8/checkpoint-4"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    folder = references.register(run_dir, str(ckpt))
    (found,) = [c for c in sweep.discover(run_dir) if c.path == folder]
    s = found.serving()
    assert s.adapter is not None and s.adapter.resolve() == ckpt.resolve()
    assert (s.weights, s.merged) == (str(tiny_model_dir), False)


@pytest.mark.parametrize(
    "spec, message",
    [("not-a-hub-id", "not a local folder, and not a hub id"),
     ("a/b/c", "not a local folder, and not a hub id")],
)  # fmt: skip
def test_bad_specs_are_named(run_dir, spec, message, capsys):
    assert sweep.main([str(run_dir), "--tasks", "sah_gsm8k", "--models", spec, "--dry_run"]) == 2
    assert message in capsys.readouterr().err


def test_checkpoint_of_an_unfinished_run_is_refused(run_dir):
    (run_dir / "tiny/gsm8k/n8/COMPLETED").unlink()
    with pytest.raises(references.ReferenceError, match="not completed"):
        references.register(run_dir, str(run_dir / "tiny/gsm8k/n8/checkpoint-2"))


def test_references_are_scored_and_drawn_as_reference_lines(
    run_dir, tiny_model_dir, tmp_path, fixtures_dir, monkeypatch
):
    from analysis.cli import main as analyse

    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    baseline = shutil.copytree(tiny_model_dir, tmp_path / "my-baseline")
    argv = [str(run_dir), "--tasks", "sah_gsm8k", "--device", "cpu", "--batch_size", "2",
            "--limit", "2", "--gen_kwargs", "max_gen_toks=4", "--model_args", "dtype=float32",
            "--models", str(baseline), str(run_dir / "tiny/gsm8k/n8/checkpoint-2")]  # fmt: skip
    assert sweep.main(argv) == 0
    for rel in ("my-baseline/reference/local", "tiny/gsm8k/n8-step2"):
        assert list((run_dir / rel / "eval" / "sah_gsm8k").glob("results_*.json"))
    assert analyse([str(run_dir), "--n-boot", "50", "--formats", "png"]) == 0
    report = (run_dir / "analysis" / "report.md").read_text()
    section = report.split("## Reference models")[1]
    assert "my-baseline" in section and "tiny/gsm8k/n8-step2" in section
    from analysis.pipeline import reference_lines
    from analysis.results import load_run

    table = load_run(run_dir, progress=False).table
    refs = table[(table["stage"] == "reference") & (table["filter"] == "strict-match")]
    names = [name for name, _ in reference_lines(refs, "gsm8k", "sah_gsm8k")]
    assert sorted(names) == ["my-baseline", "tiny n8 step 2"]


@pytest.mark.parametrize(
    "config, expected",
    [({"scale": {"prompt_format": "chat"}}, "chat"),
     ({"scale": {"prompt_format": None}}, "plain"),  # was recorded as the string "None"
     ({"scale": {"lr": 1e-5}, "budget": {"prompt_format": "chat"}}, "chat"),  # was "plain"
     ({}, "plain")],
)  # fmt: skip
def test_a_trainer_checkpoint_is_prompted_as_its_run_was_trained(run_dir, config, expected):
    """The reference of a Trainer checkpoint reads its run's prompt format the way the sweep
    does (eval_settings.prompt_format), so both agree on whether to apply a chat template."""
    scale = run_dir / "tiny/gsm8k/n8"
    manifest = json.loads((scale / "sah_manifest.json").read_text())
    (scale / "sah_manifest.json").write_text(json.dumps({**manifest, "config": config}))
    folder = references.register(run_dir, str(scale / "checkpoint-2"))
    meta = json.loads((folder / "sah_manifest.json").read_text())
    assert meta["config"]["scale"]["prompt_format"] == expected

"""Reading lm-eval result files into the tidy table: layout, newest file, partial runs, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from analysis.curves import scale_curves, select_primary
from analysis.layout import parse_model_slug
from analysis.metrics import MetricKey, parse_metric_override, primary_metric
from analysis.pipeline import Options, analyse
from analysis.results import ResultsError, load_run
from analysis.synthetic import (
    EVAL_TASKS,
    item_lines,
    make_synthetic_run,
    write_eval,
    write_manifest,
)

SCALES = (0, 100, 1000)


@pytest.fixture
def run_dir(tmp_path):
    return make_synthetic_run(tmp_path, models=("llama-3-8b",), scales=SCALES, n_items=60,
                              eval_tasks=("sah_gsm8k", "sah_ifeval", "sah_humaneval_plus"))  # fmt: skip


def test_tidy_table_has_every_metric_with_identity_and_items(run_dir):
    run = load_run(run_dir, progress=False)
    t = run.table
    assert not run.warnings
    assert set(t["eval_task"]) == {"sah_gsm8k", "sah_ifeval", "sah_humaneval_plus"}
    gsm = t[t["eval_task"] == "sah_gsm8k"]
    assert set(zip(gsm["metric"], gsm["filter"], strict=True)) == {
        ("exact_match", "strict-match"),
        ("exact_match", "flexible-extract"),
    }
    assert set(t["n"]) == set(SCALES)
    assert set(t["family"]) == {"llama-3"} and set(t["size_b"]) == {8.0}
    assert set(t[t["eval_task"] == "sah_humaneval_plus"]["task"]) == {"coding"}
    assert (t["n_items"] == 60).all() and not t["partial"].any() and t["has_samples"].all()
    assert t["stderr"].between(0, 1).all()
    # per-item scores reproduce lm-eval's aggregate, including IFEval's instruction-level pooling
    for row in t.itertuples():
        items = run.items[(row.checkpoint, row.eval_task, row.metric, row.filter)]
        assert items.value == pytest.approx(row.value, abs=1e-9)
    inst = t[(t["metric"] == "inst_level_strict_acc")].iloc[0]
    items = run.items[(inst["checkpoint"], inst["eval_task"], inst["metric"], inst["filter"])]
    assert items.den.max() > 1  # several instructions per prompt, one resampling unit


def test_newest_results_file_wins_and_any_depth_is_accepted(run_dir):
    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n100"
    lines = item_lines(EVAL_TASKS["sah_gsm8k"], 0.9, 60, 100, seed=7)
    write_eval(ckpt, "sah_gsm8k", lines, date_id="2026-02-03T04-05-06.000000")
    # an older file placed directly in eval/<task>/ (no model-name folder) must lose
    old = ckpt / "eval" / "sah_gsm8k" / "results_2020-01-01T00-00-00.000000.json"
    shutil.copy(next((ckpt / "eval" / "sah_gsm8k").rglob("results_2025*.json")), old)
    run = load_run(run_dir, progress=False)
    row = run.table[(run.table["checkpoint"] == "llama-3-8b/gsm8k/n100")
                    & (run.table["filter"] == "strict-match")]  # fmt: skip
    assert len(row) == 1
    assert "2026-02-03" in row["results_file"].iloc[0]
    expected = np.mean([ln["exact_match"] for ln in lines if ln["filter"] == "strict-match"])
    assert row["value"].iloc[0] == pytest.approx(expected)


def test_partial_run_is_flagged_with_a_warning_naming_the_file(run_dir):
    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n1000"
    shutil.rmtree(ckpt / "eval")
    lines = [
        ln for ln in item_lines(EVAL_TASKS["sah_gsm8k"], 0.5, 60, 1000, 3) if ln["doc_id"] < 20
    ]
    path = write_eval(ckpt, "sah_gsm8k", lines, n_total=1319)
    run = load_run(run_dir, progress=False)
    rows = run.table[run.table["checkpoint"] == "llama-3-8b/gsm8k/n1000"]
    assert (
        rows["partial"].all()
        and (rows["n_items"] == 20).all()
        and (rows["n_items_total"] == 1319).all()
    )
    assert any(str(path) in w and "20 of 1319" in w for w in run.warnings)
    with pytest.raises(ResultsError, match="partial run"):
        load_run(run_dir, strict=True, progress=False)
    # the item sets now differ across N: intervals fall back to unpaired resampling
    strict = run.table[
        (run.table["eval_task"] == "sah_gsm8k") & (run.table["filter"] == "strict-match")
    ]
    (curve,) = scale_curves(run, strict)
    assert not all(np.array_equal(it.doc_ids, curve.items[0].doc_ids) for it in curve.items)


def test_malformed_results_file_is_named_never_silently_skipped(run_dir):
    bad = next((run_dir / "llama-3-8b" / "gsm8k" / "n100").rglob("results_*.json"))
    bad.write_text("{ not json")
    run = load_run(run_dir, progress=False)
    assert any(str(bad) in w and "not a readable lm-eval results file" in w for w in run.warnings)
    assert "llama-3-8b/gsm8k/n100" not in set(run.table["checkpoint"])
    bad.write_text(json.dumps({"results": []}))
    with pytest.raises(ResultsError, match=r"expected a JSON object with a 'results' mapping"):
        load_run(run_dir, strict=True, progress=False)


def test_missing_manifest_falls_back_to_the_path(run_dir):
    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n100"
    (ckpt / "sah_manifest.json").unlink()
    run = load_run(run_dir, progress=False)
    row = run.table[run.table["checkpoint"] == "llama-3-8b/gsm8k/n100"].iloc[0]
    assert (row["n"], row["model"], row["family"], row["size_b"], row["experiment"]) == (
        100,
        "llama-3-8b",
        "llama-3",
        8.0,
        "synthetic",
    )
    assert any("no sah_manifest.json" in w for w in run.warnings)


def test_budget_run_identity_and_bad_manifest_field(tmp_path):
    ckpt = tmp_path / "exp" / "qwen2-0.5b" / "gsm8k" / "B1000_r0.25"
    write_manifest(ckpt, "exp", "qwen2-0.5b", "gsm8k", 250, budget=1000, sft_fraction=0.25)
    write_eval(ckpt, "sah_gsm8k", item_lines(EVAL_TASKS["sah_gsm8k"], 0.3, 10, 250, 0))
    run = load_run(tmp_path / "exp", progress=False)
    row = run.table.iloc[0]
    assert (row["budget"], row["sft_fraction"], row["size_b"]) == (1000, 0.25, 0.5)
    manifest = json.loads((ckpt / "sah_manifest.json").read_text())
    manifest["n"] = "many"
    (ckpt / "sah_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResultsError, match=r"sah_manifest.json: field 'n' should be int"):
        load_run(tmp_path / "exp", strict=True, progress=False)


def test_clear_errors_for_missing_or_empty_run_directory(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(ResultsError, match="no lm-eval results found"):
        load_run(tmp_path)


def test_model_slug_parsing():
    assert parse_model_slug("llama-3-8b") == ("llama-3", 8.0)
    assert parse_model_slug("qwen2.5-0.5b-instruct") == ("qwen2.5", 0.5)
    assert parse_model_slug("pythia-410m") == ("pythia", 0.41)
    assert parse_model_slug("tiny") == (None, None)


def test_primary_metric_defaults_and_overrides(run_dir):
    avail = [MetricKey("exact_match", "strict-match"), MetricKey("exact_match", "flexible-extract")]
    assert primary_metric("sah_gsm8k", avail) == MetricKey("exact_match", "strict-match")
    override = dict([parse_metric_override("sah_gsm8k=exact_match,flexible-extract")])
    assert primary_metric("sah_gsm8k", avail, override) == MetricKey(
        "exact_match", "flexible-extract"
    )
    assert primary_metric("my_new_task", [MetricKey("acc", "none")]) == MetricKey("acc", "none")
    maj = [
        MetricKey(m, f) for m in ("maj@8", "pass@1") for f in ("flexible-extract", "strict-match")
    ]
    assert primary_metric("sah_gsm8k_maj", maj) == MetricKey("maj@8", "strict-match")
    with pytest.raises(ValueError, match="TASK=METRIC"):
        parse_metric_override("exact_match")
    with pytest.raises(ValueError, match="reported only"):
        primary_metric("sah_gsm8k", avail, {"sah_gsm8k": MetricKey("f1", "none")})
    run = load_run(run_dir, progress=False)
    chosen = select_primary(run.table, None)
    assert set(zip(chosen["eval_task"], chosen["metric"], strict=True)) == {
        ("sah_gsm8k", "exact_match"),
        ("sah_ifeval", "prompt_level_strict_acc"),
        ("sah_humaneval_plus", "pass@1_plus"),
    }


@pytest.mark.parametrize(
    ("task", "reported", "chosen"),
    [
        ("gsm8k", ["exact_match,flexible-extract", "exact_match,strict-match"],
         "exact_match,strict-match"),
        ("ifeval", ["inst_level_loose_acc,none", "prompt_level_strict_acc,none"],
         "prompt_level_strict_acc,none"),
        ("hellaswag", ["acc,none", "acc_norm,none"], "acc_norm,none"),
        ("arc_challenge", ["acc,none", "acc_norm,none"], "acc_norm,none"),
        ("arc_easy", ["acc,none"], "acc,none"),  # the fallback when acc_norm is missing
    ],
)  # fmt: skip
def test_lm_eval_builtin_tasks_have_default_primary_metrics(task, reported, chosen):
    guesses: list[str] = []
    available = [MetricKey(*m.split(",")) for m in reported]
    assert str(primary_metric(task, available, on_guess=guesses.append)) == chosen
    assert guesses == []


def test_a_guessed_primary_metric_is_a_warning_naming_it_and_the_override(run_dir):
    guesses: list[str] = []
    available = [MetricKey("f1", "none"), MetricKey("acc", "none")]
    assert primary_metric("my_task", available, on_guess=guesses.append) == MetricKey("acc", "none")
    (message,) = guesses
    assert "my_task" in message and "acc,none" in message
    assert "--metric my_task=METRIC,FILTER" in message
    primary_metric("my_task", [MetricKey("acc", "none")], on_guess=guesses.append)
    assert len(guesses) == 1  # one metric reported: nothing was guessed
    # the pipeline lists the guess among the report's warnings
    lines = item_lines(EVAL_TASKS["sah_multihop"], 0.5, 60, 100, seed=3)
    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n100"
    write_eval(ckpt, "my_task", lines)
    out = analyse(run_dir, Options(out=run_dir / "an", n_boot=20, formats=("png",),
                                   progress=False))  # fmt: skip
    assert any("my_task" in w and "--metric my_task=METRIC,FILTER" in w for w in out.run.warnings)


def test_staging_and_superseded_results_are_never_read(run_dir):
    """The sweep stages lm-eval's output in eval/.partial-<task>/ and sets replaced results
    aside in eval/<task>/superseded/: a newer file in either must not replace the real one."""
    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n100"
    before = load_run(run_dir, progress=False).table
    lines = item_lines(EVAL_TASKS["sah_gsm8k"], 0.0, 60, 100, seed=3)
    for where in (".partial-sah_gsm8k", "sah_gsm8k/superseded/20260101T000000"):
        staged = ckpt / "eval" / where
        write_eval(ckpt, "sah_gsm8k", lines, date_id="2027-01-01T00-00-00.000000")
        newest = next((ckpt / "eval" / "sah_gsm8k").rglob("results_2027*.json"))
        staged.mkdir(parents=True, exist_ok=True)
        for f in newest.parent.glob("*2027*"):
            f.replace(staged / f.name)
    after = load_run(run_dir, progress=False).table
    assert after["value"].tolist() == before["value"].tolist()
    assert after["results_file"].tolist() == before["results_file"].tolist()


def _results_files(run_dir):
    return sorted(run_dir.rglob("results_*.json"))


def test_nothing_readable_is_one_clear_error_and_a_failing_exit(run_dir, capsys):
    from analysis.cli import main

    files = _results_files(run_dir)
    for path in files:
        path.write_text("{ not json")
    with pytest.raises(ResultsError) as err:
        load_run(run_dir, progress=False)
    message = str(err.value)
    assert message.startswith(f"{run_dir}: no readable results: {len(files)} results files ")
    assert f"({len(files)} unreadable), see warnings above" in message
    assert main([str(run_dir), "--quiet", "--out", str(run_dir.parent / "out")]) != 0
    captured = capsys.readouterr()
    assert "analysed" not in captured.out
    (line,) = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert str(run_dir) in line and "no readable results" in line
    assert not (run_dir.parent / "out").exists()


def test_nothing_readable_when_every_checkpoint_or_task_is_skipped(run_dir):
    files = _results_files(run_dir)
    for manifest in run_dir.rglob("sah_manifest.json"):
        manifest.write_text("[]")  # not an object: the checkpoint's identity is unknown
    with pytest.raises(ResultsError, match=rf"{len(files)} results files skipped \({len(files)} "
                       r"in checkpoint folders of unknown identity\)"):  # fmt: skip
        load_run(run_dir, progress=False)
    shutil.rmtree(run_dir)
    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n100"
    write_manifest(ckpt, "synthetic", "llama-3-8b", "gsm8k", 100)
    folder = ckpt / "eval" / "sah_gsm8k"
    folder.mkdir(parents=True)
    (folder / "results_2025-01-01T00-00-00.json").write_text(json.dumps({"results": {}}))
    with pytest.raises(ResultsError, match=r"1 results file skipped \(1 without task scores\)"):
        load_run(run_dir, progress=False)


def _partial_eval(ckpt, date_id):
    lines = [ln for ln in item_lines(EVAL_TASKS["sah_gsm8k"], 0.0, 60, 100, 3) if ln["doc_id"] < 20]
    return write_eval(ckpt, "sah_gsm8k", lines, n_total=60, date_id=date_id)


def test_complete_result_wins_over_a_newer_partial_one(run_dir):
    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n100"
    name = "llama-3-8b/gsm8k/n100"
    complete = next((ckpt / "eval" / "sah_gsm8k").rglob("results_*.json"))
    newer_complete = write_eval(ckpt, "sah_gsm8k", item_lines(EVAL_TASKS["sah_gsm8k"], 0.9, 60,
                                100, 7), date_id="2026-01-01T00-00-00.000000")  # fmt: skip
    partial = _partial_eval(ckpt, "2026-06-01T00-00-00.000000")  # newest of all, --limit 20
    run = load_run(run_dir, progress=False)
    rows = run.table[(run.table["checkpoint"] == name) & (run.table["eval_task"] == "sah_gsm8k")]
    assert set(rows["results_file"]) == {str(newer_complete)}  # the newest complete one
    assert not rows["partial"].any() and (rows["n_items"] == 60).all() and rows["has_samples"].all()
    assert not any("partial run" in w for w in run.warnings)
    load_run(run_dir, strict=True, progress=False)  # an unused partial file is no problem
    newer_complete.unlink()
    run = load_run(run_dir, progress=False)  # an older complete one still beats the partial one
    rows = run.table[(run.table["checkpoint"] == name) & (run.table["eval_task"] == "sah_gsm8k")]
    assert set(rows["results_file"]) == {str(complete)} and not rows["partial"].any()
    for path in (complete, *ckpt.rglob("samples_sah_gsm8k_2025*.jsonl")):
        path.unlink()
    run = load_run(run_dir, progress=False)  # only the partial one is left: used, flagged
    rows = run.table[(run.table["checkpoint"] == name) & (run.table["eval_task"] == "sah_gsm8k")]
    assert set(rows["results_file"]) == {str(partial)}
    assert rows["partial"].all() and (rows["n_items"] == 20).all()
    assert any(str(partial) in w and "20 of 60" in w for w in run.warnings)


def test_copied_checkpoint_folder_is_refused_unless_its_seed_differs(run_dir, capsys):
    from analysis.cli import main
    from analysis.results import DuplicateCheckpointError

    ckpt = run_dir / "llama-3-8b" / "gsm8k" / "n100"
    copy = ckpt.with_name("n100_copy")
    shutil.copytree(ckpt, copy)
    with pytest.raises(DuplicateCheckpointError) as err:
        load_run(run_dir, progress=False)
    message = str(err.value)
    assert "llama-3-8b/gsm8k/n100, llama-3-8b/gsm8k/n100_copy" in message
    assert "model=llama-3-8b, task=gsm8k, n=100, seed=0" in message and "seeds" in message
    assert main([str(run_dir), "--quiet", "--out", str(run_dir.parent / "out")]) == 2
    assert "n100_copy" in capsys.readouterr().err
    manifest = json.loads((copy / "sah_manifest.json").read_text())
    (copy / "sah_manifest.json").write_text(json.dumps({**manifest, "seed": 1}))
    table = load_run(run_dir, progress=False).table
    assert sorted(set(table[table["n"] == 100]["seed"])) == [0, 1]  # two seeds: legitimate


def test_copied_budget_checkpoint_is_refused(tmp_path):
    from analysis.results import DuplicateCheckpointError

    for leaf in ("B1000_r0.25", "B1000_r0.25_copy"):
        ckpt = tmp_path / "exp" / "qwen2-0.5b" / "gsm8k" / leaf
        write_manifest(ckpt, "exp", "qwen2-0.5b", "gsm8k", 250, budget=1000, sft_fraction=0.25)
        write_eval(ckpt, "sah_gsm8k", item_lines(EVAL_TASKS["sah_gsm8k"], 0.3, 10, 250, 0))
    with pytest.raises(DuplicateCheckpointError,
                       match=r"B1000_r0.25, .*B1000_r0.25_copy .*budget=1000, sft_fraction=0.25, "
                             r"seed=0"):  # fmt: skip
        load_run(tmp_path / "exp", progress=False)


def test_samples_read_in_worker_processes_give_the_same_items_and_warnings(run_dir, monkeypatch):
    """Large runs parse their samples files in a process pool; the result must not differ."""
    import analysis.results as results

    bad = next((run_dir / "llama-3-8b" / "ifeval" / "n100").rglob("samples_*.jsonl"))
    bad.write_text("{not json\n")
    monkeypatch.setattr(results, "_PARALLEL_FROM", 10**9)
    serial = load_run(run_dir, progress=False)
    monkeypatch.setattr(results, "_PARALLEL_FROM", 2)
    pooled = load_run(run_dir, progress=False)
    assert pooled.items.keys() == serial.items.keys() and len(serial.items) > 0
    for key, items in serial.items.items():
        np.testing.assert_array_equal(pooled.items[key].num, items.num)
    assert pooled.warnings == serial.warnings
    assert any(str(bad) in w and "per-item scores unusable" in w for w in pooled.warnings)

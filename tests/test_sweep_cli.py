"""`sah-eval sweep --help` and flag spellings (issue 15's sweep items)."""

from __future__ import annotations

import argparse

import pytest

from sah_tasks import sweep


def test_help_keeps_the_examples_line_by_line_and_every_flag_is_explained():
    parser = sweep.build_parser()
    text = parser.format_help()
    lines = text.splitlines()
    assert "examples:" in lines
    start = lines.index("examples:")
    examples = [line.strip() for line in lines[start + 1 :] if line.strip()]
    assert examples[0].startswith("sah-eval sweep runs/exp --tasks sah_gsm8k,sah_ifeval")
    assert examples[0].endswith("\\")  # a copy-pasteable continuation, not reflowed
    assert all(line.startswith(("sah-eval sweep", "--")) for line in examples), examples
    undocumented = [
        a.option_strings[0]
        for a in parser._actions
        if a.option_strings and not (a.help and a.help.strip()) and a.help != argparse.SUPPRESS
    ]
    assert undocumented == []
    assert "(default: auto" in " ".join(text.split())  # the sweep's batch size, not lm-eval's 1


@pytest.mark.parametrize(
    "flag, dest, value",
    [
        ("--dry_run", "dry_run", True),
        ("--dry-run", "dry_run", True),
        ("--per-unit", "per_unit", True),
        ("--no-lora-switching", "no_lora_switching", True),
        ("--gpu-memory-utilization=0.5", "gpu_memory_utilization", 0.5),
        ("--max-batch-size=8", "max_batch_size", 8),
    ],
)
def test_both_spellings_of_every_flag_work(flag, dest, value):
    args = sweep.build_parser().parse_args(["runs/x", "--tasks", "sah_gsm8k", flag])
    assert getattr(args, dest) == value


def test_per_unit_flag_turns_pooling_off():
    parse = sweep.build_parser().parse_args
    assert sweep.options_from_args(parse(["r", "--tasks", "sah_gsm8k"])).pooled is True
    per_unit = parse(["r", "--tasks", "sah_gsm8k", "--per_unit", "--max_batch_size", "4"])
    opts = sweep.options_from_args(per_unit)
    assert opts.pooled is False and opts.max_batch_size == 4 and opts.batch_size == "auto"


def test_dry_run_with_dashes_lists_the_units(tmp_path, tiny_model_dir, capsys):
    from run_helpers import write_checkpoint

    write_checkpoint(tmp_path / "runs" / "tiny" / "gsm8k" / "n0", 0, str(tiny_model_dir))
    assert sweep.main([str(tmp_path / "runs"), "--tasks", "sah_gsm8k", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:3] for line in out] == [["todo", "tiny/gsm8k/n0", "sah_gsm8k"]]


def test_only_sah_patterns_get_the_small_task_index():
    """The small index (sah's folder only) for `sah_*` patterns, lm-eval's whole one otherwise;
    the small one has every sah task the whole one has, from the same files."""
    small = sweep.task_manager_for(["sah_*"])
    full = sweep.task_manager_for(["sah_gsm8k", "gsm8k"])
    ours = {n: e.yaml_path for n, e in full.task_index.items() if n.startswith("sah_")}
    assert ours and {n: small.task_index[n].yaml_path for n in ours} == ours
    assert set(small.task_index) == set(ours)  # nothing of lm-eval's own
    assert len(full.task_index) > 1000
    assert sweep.expand_tasks(["sah_*"], small) == sweep.expand_tasks(["sah_*"], full)


def test_a_non_integer_parallel_size_in_model_args_is_named(tmp_path, tiny_model_dir, capsys):
    """The sweep reads data_parallel_size itself (its warning, Ray's GPUs): a bad value was a
    raw ValueError traceback after the units were planned."""
    from run_helpers import write_checkpoint

    write_checkpoint(tmp_path / "runs" / "tiny" / "gsm8k" / "n0", 0, str(tiny_model_dir))
    argv = [
        str(tmp_path / "runs"),
        "--tasks",
        "sah_gsm8k",
        "--model_args",
        "data_parallel_size=two",
    ]
    assert sweep.main(argv) == 2
    assert "--model_args data_parallel_size=two: expected an integer" in capsys.readouterr().err

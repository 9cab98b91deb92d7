"""The label map: a readable default for every shipped task, metric and filter; user overrides
from a YAML file, with clear errors for a bad one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from analysis.labels import Labels, LabelsError, load_labels, model_label, model_order
from analysis.metrics import PRIMARY_METRICS

ROOT = Path(__file__).resolve().parents[1]
TASK_YAMLS = sorted((ROOT / "sah_tasks").glob("*/*.yaml"))


def _shipped() -> tuple[set[str], set[str], set[str]]:
    """Task names, metric names and filter names written in the shipped task YAMLs (and their
    included templates), read as text (the YAMLs use lm-eval's !function tags)."""
    tasks, metrics, filters = set(), set(), set()
    for path in [*TASK_YAMLS, *(ROOT / "sah_tasks").glob("*/_*_yaml")]:
        text = path.read_text()
        tasks |= set(re.findall(r"^task:\s*(\S+)", text, re.M))
        metrics |= set(re.findall(r"^\s*- metric:\s*(\S+)", text, re.M))
        filters |= set(re.findall(r"^\s*- name:\s*(\S+)", text, re.M))
    return tasks, metrics, filters


def test_every_shipped_task_metric_and_filter_has_a_readable_default():
    tasks, metrics, filters = _shipped()
    assert len(tasks) >= 15 and {"exact_match", "prompt_level_strict_acc"} <= metrics
    labels = Labels.defaults()
    for task in tasks:
        assert labels.task(task) != task and "sah_" not in labels.task(task), task
    for metric in metrics:
        assert metric in labels.metrics, metric
    for name in filters:
        assert name in labels.filters, name
    # the code tasks compute pass@1_plus in Python (not in their YAML); lm-eval's built-ins
    for metric in {key.metric for _, key in PRIMARY_METRICS}:
        assert labels.metric(metric) != metric or metric.startswith("pass@"), metric
    for builtin in ("gsm8k", "ifeval", "hellaswag", "arc_easy", "arc_challenge"):
        assert labels.task(builtin) != builtin


def test_metric_labels_show_the_filter_only_when_it_says_something():
    labels = Labels.defaults()
    assert labels.metric("exact_match", "strict-match") == "exact match (strict: #### answer)"
    assert labels.metric("exact_match", "none") == "exact match"
    assert labels.metric("my_metric", "my-filter") == "my_metric (my-filter)"  # unknown: as is
    assert labels.metric("pass@1_plus") == "pass@1 (base + plus tests)"


def test_training_tasks_of_the_trainers_have_labels():
    source = (ROOT / "trainers" / "data.py").read_text()
    names = set(re.findall(r'^\s{4}"(\w+)": TaskSource\(', source, re.M))
    assert {"gsm8k", "multihop_closedbook", "facts100_documents"} <= names
    labels = Labels.defaults()
    for name in names:
        assert name in labels.training_tasks, name


@pytest.mark.parametrize(
    ("slug", "label"),
    [
        ("llama-3-8b", "Llama-3 8B"),
        ("llama-3-70b", "Llama-3 70B"),
        ("qwen2-0.5b-instruct", "Qwen2 0.5B instruct"),
        ("pythia-410m", "Pythia 410M"),
        ("mistral-7b-v0.1", "Mistral 7B v0.1"),
        ("olmo-2-7b", "OLMo-2 7B"),
        ("tiny", "tiny"),  # no size in the slug: shown as it is
    ],
)
def test_model_labels_from_slugs(slug, label):
    assert model_label(slug) == label


def test_models_sort_by_family_then_size():
    slugs = ["llama-3-70b", "qwen2-7b", "llama-3-8b", "qwen2-0.5b"]
    assert sorted(slugs, key=model_order) == ["llama-3-8b", "llama-3-70b", "qwen2-0.5b", "qwen2-7b"]


def test_a_label_file_overrides_and_extends_the_defaults(tmp_path):
    path = tmp_path / "labels.yaml"
    path.write_text(
        "tasks: {sah_gsm8k: GSM8K (0-shot), my_task: Mine}\n"
        "models: {'qwen2-*': Qwen, llama-3-8b: L8}\n"
        "metrics: {exact_match: accuracy}\n"
        "families: {llama-3: Llama 3}\n"
    )
    labels = load_labels(path)
    assert labels.task("sah_gsm8k") == "GSM8K (0-shot)" and labels.task("my_task") == "Mine"
    assert labels.task("sah_ifeval") == "IFEval"  # untouched defaults stay
    assert labels.model("qwen2-7b") == "Qwen" and labels.model("llama-3-8b") == "L8"
    assert labels.model("llama-3-70b") == "Llama-3 70B"
    assert labels.metric("exact_match", "strict-match") == "accuracy (strict: #### answer)"
    assert labels.family("llama-3") == "Llama 3" and labels.family("qwen2") == "Qwen2"
    # the defaults, dumped, are a valid label file that changes nothing
    dumped = tmp_path / "defaults.yaml"
    dumped.write_text(Labels.defaults().to_yaml())
    assert load_labels(dumped) == Labels.defaults()
    assert yaml.safe_load(dumped.read_text())["tasks"]["sah_gsm8k"] == "GSM8K"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: {sah_gsm8k: x}\n", r"unknown section\(s\) \['task'\]; expected some of"),
        ("- a\n- b\n", "expected a mapping with sections"),
        ("tasks: [GSM8K]\n", "section 'tasks' should map identifiers to label text"),
        ("tasks: {sah_gsm8k: {x: 1}}\n", "section 'tasks' should map identifiers"),
        ("tasks: {sah_gsm8k: 'x'\n", "not valid YAML"),
    ],
)
def test_a_bad_label_file_is_named_with_what_was_expected(tmp_path, text, message):
    path = tmp_path / "labels.yaml"
    path.write_text(text)
    with pytest.raises(LabelsError, match=message) as info:
        load_labels(path)
    assert str(path) in str(info.value)


def test_a_label_file_that_is_not_utf8_or_yaml_is_one_line(tmp_path):
    path = tmp_path / "labels.yaml"
    path.write_bytes("tasks: {sah_gsm8k: Caf\xe9}\n".encode("latin-1"))
    with pytest.raises(LabelsError, match=r"not UTF-8 text \(byte 0xe9 at offset 22\)"):
        load_labels(path)
    path.write_text("tasks: {sah_gsm8k: 'x'\n")
    with pytest.raises(LabelsError, match="not valid YAML") as info:
        load_labels(path)
    assert "\n" not in str(info.value)


def test_a_missing_label_file_is_named(tmp_path):
    with pytest.raises(LabelsError, match="missing.yaml: cannot read the label file"):
        load_labels(tmp_path / "missing.yaml")
    assert load_labels(None) == Labels.defaults()
    assert load_labels_empty(tmp_path) == Labels.defaults()


def load_labels_empty(tmp_path: Path) -> Labels:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    return load_labels(path)


def test_labels_command_prints_a_label_file_one_can_start_from(tmp_path, capsys):
    from analysis.labels import main

    assert main([]) == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed)["tasks"]["sah_ifeval"] == "IFEval"
    mine = tmp_path / "mine.yaml"
    mine.write_text("tasks: {sah_ifeval: IF}\n")
    assert main([str(mine)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["tasks"]["sah_ifeval"] == "IF"
    mine.write_text("colours: {}\n")
    assert main([str(mine)]) == 2
    assert "unknown section(s) ['colours']" in capsys.readouterr().err

"""Every task YAML registers (lm-eval silently skips one it cannot parse), and bad data is loud."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lm_eval.tasks import TaskManager

from sah_tasks import TASKS_DIR
from sah_tasks.common.data import TaskDataError


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _task_yamls() -> list[Path]:
    return sorted(Path(TASKS_DIR).rglob("*.yaml"))


@pytest.fixture(scope="module")
def manager() -> TaskManager:
    return TaskManager(include_path=TASKS_DIR, include_defaults=False)


def test_every_yaml_registers(manager):
    yamls = _task_yamls()
    assert len(yamls) >= 4
    for path in yamls:
        cfg = yaml.load(path.read_text(), _Loader)
        assert isinstance(cfg, dict) and cfg.get("task"), f"{path} has no `task:` key"
        assert cfg["task"] in manager.all_subtasks, f"{path}: task {cfg['task']} did not register"


def test_core_tasks_present_and_globbed(manager):
    names = set(manager.match_tasks(["sah_*"]))
    assert {"sah_gsm8k", "sah_gsm8k_fewshot", "sah_ifeval", "sah_multihop"} <= names


def test_no_group_named_like_the_glob(manager):
    # A group called sah_* would break `--tasks 'sah_*'`; tags are fine.
    assert not [g for g in manager.all_groups if g.startswith("sah_")]
    assert "sah_core" in manager.all_tags


def test_sah_eval_adds_our_folder_but_keeps_the_users(tmp_path):
    from sah_tasks.cli import _with_sah_tasks

    assert _with_sah_tasks(None) == [TASKS_DIR]
    assert _with_sah_tasks(str(tmp_path)) == [TASKS_DIR, str(tmp_path)]
    assert _with_sah_tasks(f"{tmp_path}:/other") == [TASKS_DIR, str(tmp_path), "/other"]
    assert _with_sah_tasks([TASKS_DIR, "/x"]) == [TASKS_DIR, "/x"]


def test_missing_local_file_names_path_and_variable(monkeypatch, tmp_path):
    from sah_tasks.gsm8k.utils import load

    missing = tmp_path / "nope.jsonl"
    monkeypatch.setenv("SAH_GSM8K_DATA", str(missing))
    with pytest.raises(TaskDataError, match=r"nope\.jsonl.*\$SAH_GSM8K_DATA"):
        load()
    monkeypatch.delenv("SAH_GSM8K_DATA")
    with pytest.raises(TaskDataError, match=r"nope\.jsonl.*--metadata data_files"):
        load(data_files=str(missing))


def test_local_rows_missing_fields_name_file_line_and_field(monkeypatch, tmp_path):
    from sah_tasks.gsm8k.utils import load

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2"}\n')
    monkeypatch.setenv("SAH_GSM8K_DATA", str(bad))
    with pytest.raises(TaskDataError, match=r"bad\.jsonl:2: missing field\(s\) \['answer'\]"):
        load()
    bad.write_text("not json\n")
    with pytest.raises(TaskDataError, match=r"bad\.jsonl:1: not valid JSON"):
        load()


def test_local_file_loads_into_the_test_split(monkeypatch, fixtures_dir):
    from sah_tasks.multihop.utils import load

    monkeypatch.setenv("SAH_MULTIHOP_DATA", str(fixtures_dir / "multihop_subqa.jsonl"))
    ds = load(version=1.0)  # lm-eval passes the YAML metadata through; it must be ignored
    assert list(ds) == ["test"] and ds["test"].num_rows == 2
    assert ds["test"][0]["answers"] == ["Todd Phillips", "Todd Bunzl"]

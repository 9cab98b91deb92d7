"""`sah-eval sweep`: discovery, sharding, resume after a kill, and vLLM adapter bookkeeping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from sah_tasks import sweep

TASKS = ["sah_gsm8k", "sah_multihop"]


def _checkpoint(folder: Path, n: int, model_path: str, completed: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": 1, "n": n, "task": "gsm8k", "model_path": model_path,
                "base_model": model_path, "lora": False, "stage": "base" if n == 0 else "sft"}  # fmt: skip
    (folder / "sah_manifest.json").write_text(json.dumps(manifest))
    if completed:
        (folder / "COMPLETED").write_text("")
    return folder


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir) -> Path:
    """3 completed checkpoints (n0 -> the base model, n8 and n32 -> weight copies) + 1 incomplete."""
    root = tmp_path / "runs" / "exp"
    base = root / "tiny" / "gsm8k"
    _checkpoint(base / "n0", 0, str(tiny_model_dir))
    for n in (8, 32):
        ckpt = base / f"n{n}"
        shutil.copytree(tiny_model_dir, ckpt)
        _checkpoint(ckpt, n, ".")
    _checkpoint(base / "n128", 128, ".", completed=False)
    return root


@pytest.fixture(scope="module")
def task_manager():
    from sah_tasks.cli import install_task_path

    install_task_path()
    from lm_eval.tasks import TaskManager

    return TaskManager()


@pytest.fixture
def fixture_env(monkeypatch, fixtures_dir):
    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    monkeypatch.setenv("SAH_MULTIHOP_DATA", str(fixtures_dir / "multihop_hotpotqa.jsonl"))


OPTS = sweep.SweepOptions(backend="hf", device="cpu", batch_size="4", limit=2,
                          gen_kwargs="max_gen_toks=16", model_args="dtype=float32")  # fmt: skip


def test_discover_skips_incomplete_and_resolves_model_paths(run_dir, tiny_model_dir):
    found = sweep.discover(run_dir)
    assert [c.rel for c in found] == ["tiny/gsm8k/n0", "tiny/gsm8k/n32", "tiny/gsm8k/n8"]
    assert found[0].model_path == str(tiny_model_dir)
    assert found[1].model_path == str(run_dir / "tiny/gsm8k/n32")


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(sweep.SweepError, match="does not exist"):
        sweep.discover(tmp_path / "missing")
    with pytest.raises(sweep.SweepError, match="no completed checkpoint"):
        sweep.discover(tmp_path)
    bad = tmp_path / "m" / "n1"
    bad.mkdir(parents=True)
    (bad / "sah_manifest.json").write_text("{oops")
    (bad / "COMPLETED").write_text("")
    with pytest.raises(sweep.SweepError, match=r"sah_manifest.json: not valid JSON"):
        sweep.discover(tmp_path)
    for spec in ("2/2", "a/b", "1/0", "-1/3"):
        with pytest.raises(sweep.SweepError, match="--shard"):
            sweep.parse_shard(spec)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_cover_every_unit_exactly_once(run_dir, count):
    units = sweep.plan(sweep.discover(run_dir), TASKS)
    shards = [sweep.take_shard(units, i, count) for i in range(count)]
    keys = [u.key for shard in shards for u in shard]
    assert sorted(keys) == sorted(u.key for u in units)
    assert len(keys) == len(set(keys)) == 6


@pytest.mark.parametrize("count", [2, 4, 8])
def test_shards_deal_whole_checkpoints_so_each_model_loads_once(tmp_path, count, monkeypatch):
    """6 checkpoints x 2 tasks: 6 model loads over all shards (dealing units cost 12)."""
    root = tmp_path / "runs"
    for n in (0, 8, 16, 32, 64, 128):
        _checkpoint(root / f"m/gsm8k/n{n}", n, ".")
    units = sweep.plan(sweep.discover(root), TASKS)
    loads = []
    monkeypatch.setattr(
        sweep, "_load_lm", lambda args, opts: loads.append(args) or SimpleNamespace()
    )
    monkeypatch.setattr(sweep, "evaluate_unit", lambda lm, u, tm, o, r=None: True)
    for i in range(count):
        shard = sweep.take_shard(units, i, count)
        assert len({u.checkpoint.rel for u in shard}) * len(TASKS) == len(shard)
        sweep.run_units(shard, None, OPTS)
    assert len(loads) == 6 and len(set(loads)) == 6


def _state(unit, task_manager, opts=OPTS) -> str:
    from sah_tasks import ledger

    return ledger.status(
        unit.out_dir, unit.task, sweep.unit_request(unit, ledger.Ledger(task_manager), opts)
    )[0]


def test_sweep_writes_results_skips_done_and_resumes_after_a_kill(
    run_dir, task_manager, fixture_env, monkeypatch
):
    units = sweep.plan(sweep.discover(run_dir), TASKS)

    # 1. A sweep that dies while finalising its 4th unit (after 3 finished) ...
    real_finalise, calls = sweep._finalise, {"n": 0}

    def dying_finalise(staging, out_dir, task):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill")
        real_finalise(staging, out_dir, task)

    monkeypatch.setattr(sweep, "_finalise", dying_finalise)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_units(units, task_manager, OPTS)
    monkeypatch.setattr(sweep, "_finalise", real_finalise)
    finished = [u for u in units if _state(u, task_manager) == "done"]
    assert len(finished) == 3
    stamps = {u.key: next(u.out_dir.glob("results_*.json")).stat().st_mtime_ns for u in finished}

    # 2. ... is finished by a rerun that redoes none of the finished units.
    report = sweep.run_units(units, task_manager, OPTS)
    assert sorted(report.skipped) == sorted(stamps)
    assert len(report.done) == 3 and not report.failed
    assert all(_state(u, task_manager) == "done" for u in units)
    for u in finished:
        assert next(u.out_dir.glob("results_*.json")).stat().st_mtime_ns == stamps[u.key]
    assert not list(run_dir.rglob(".partial-*")), "staging folders must be cleaned up"

    # Results land in the checkpoint's own eval/<task>/ folder, one results + one samples file.
    for u in units:
        results = list(u.out_dir.glob("results_*.json"))
        assert len(results) == 1 and len(list(u.out_dir.glob("samples_*.jsonl"))) == 1
        data = json.loads(results[0].read_text())
        assert u.task in data["results"] and data["sah"]["checkpoint"] == u.checkpoint.rel
    assert not (run_dir / "tiny/gsm8k/n128/eval").exists()

    # 3. A third run does no work and loads no model.
    report = sweep.run_units(units, task_manager, OPTS)
    assert report.done == [] and report.model_loads == 0 and len(report.skipped) == 6


def test_one_model_load_per_checkpoint(run_dir, task_manager, fixture_env, monkeypatch):
    import weakref

    class Model:
        pass

    loads, evaluated, alive = [], [], []

    def load(args, opts):
        # the previous model must be gone before the next one is built (GPU memory)
        assert not any(ref() is not None for ref in alive), "previous model still referenced"
        loads.append(args)
        model = Model()
        alive.append(weakref.ref(model))
        return model

    monkeypatch.setattr(sweep, "_load_lm", load)
    monkeypatch.setattr(
        sweep, "evaluate_unit", lambda lm, u, tm, o, r=None: evaluated.append(u.key) or True
    )
    units = sweep.plan(sweep.discover(run_dir), TASKS)
    report = sweep.run_units(units, task_manager, OPTS)
    assert len(loads) == 3 and report.model_loads == 3 and len(evaluated) == 6
    assert all(a.startswith("pretrained=") and "dtype=float32" in a for a in loads)


def _adapter(folder: Path, rank: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return folder


def test_adapter_book_ids_and_rank(tmp_path):
    a, b = _adapter(tmp_path / "n8/adapter", 8), _adapter(tmp_path / "n64/adapter", 24)
    book = sweep.AdapterBook([b, a, a])
    assert sorted(book.ids.values()) == [1, 2]  # distinct ids, duplicates collapsed
    assert book.max_rank == 32  # rounded up to a rank vLLM accepts
    try:
        from vllm.lora.request import LoRARequest
    except ImportError:  # vLLM is a GPU extra; check the wire shape with a stand-in
        from collections import namedtuple

        LoRARequest = namedtuple("LoRARequest", "lora_name lora_int_id lora_path")
    req = book.request(b, LoRARequest)
    assert (req.lora_int_id, req.lora_path) == (book.ids[b], str(b))
    assert req.lora_name != book.request(a, LoRARequest).lora_name
    with pytest.raises(sweep.SweepError, match="adapter_config.json"):
        _ = sweep.AdapterBook([tmp_path]).max_rank


def test_vllm_lora_sweep_uses_one_engine_and_switches_adapters(
    tmp_path, task_manager, fixture_env, monkeypatch
):
    root = tmp_path / "runs"
    _checkpoint(root / "m/gsm8k/n0", 0, "base/model")
    for n, rank in ((8, 8), (64, 16)):
        ckpt = _checkpoint(root / f"m/gsm8k/n{n}", n, ".")
        manifest = json.loads((ckpt / "sah_manifest.json").read_text())
        manifest.update(lora=True, base_model="base/model")
        (ckpt / "sah_manifest.json").write_text(json.dumps(manifest))
        _adapter(ckpt / "adapter", rank)

    class FakeEngine:
        lora_request = None

    engines, seen = [], []
    monkeypatch.setattr(sweep, "_load_lm", lambda args, opts: engines.append(args) or FakeEngine())
    monkeypatch.setattr(
        sweep,
        "evaluate_unit",
        lambda lm, u, tm, o, r=None: seen.append((u.checkpoint.rel, lm.lora_request)) or True,
    )
    monkeypatch.setattr(
        sweep.AdapterBook, "request", lambda self, p, cls=None: ("req", self.ids[Path(p)], str(p))
    )
    opts = sweep.SweepOptions(backend="vllm")
    report = sweep.run_units(sweep.plan(sweep.discover(root), ["sah_gsm8k"]), task_manager, opts)
    assert report.model_loads == 1 and len(engines) == 1
    assert "pretrained=base/model" in engines[0] and "max_lora_rank=16" in engines[0]
    by_rel = dict(seen)
    assert by_rel["m/gsm8k/n0"] is None  # the base model is served without an adapter
    assert by_rel["m/gsm8k/n8"][1] != by_rel["m/gsm8k/n64"][1]


def test_checkpoint_glob_filters_discovery(run_dir):
    assert [c.rel for c in sweep.discover(run_dir, "*/n8")] == ["tiny/gsm8k/n8"]
    with pytest.raises(sweep.SweepError, match="matching '\\*/ifeval/\\*'"):
        sweep.discover(run_dir, "*/ifeval/*")


# ----------------------------------------------------------------------------- serving plans
def _manifest(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sah_manifest.json").write_text(json.dumps({"schema_version": 1, **fields}))
    (folder / "COMPLETED").write_text("")
    return folder


def _plans(root: Path, opts: sweep.SweepOptions) -> dict[str, str]:
    """checkpoint -> the lm-eval model args of the engine that scores it (+ its request)."""
    report = sweep.SweepReport()
    units = sweep.plan(sweep.discover(root), ["sah_gsm8k"])
    out = {}
    for group in sweep.engine_groups(units, opts, report):
        args = sweep.engine_model_args(group, opts)
        for checkpoint, request, _ in group.members:
            out[checkpoint.rel] = args + (f" +request={request.parent.name}" if request else "")
    for rel, _, why in report.failed:
        out[rel] = f"FAILED {why}"
    return out


@pytest.fixture
def mixed_lora_dir(tmp_path) -> Path:
    """A hub base at a pinned revision; n0, a full fine-tune, merged and unmerged LoRA scales,
    and a budget point with r = 1 pointing at the full fine-tune."""
    root = tmp_path / "runs" / "exp"
    s = root / "m" / "gsm8k"
    hub = {"base_model": "org/base", "base_revision": "abc123"}
    _manifest(s / "n0", n=0, model_path="org/base", lora=False, **hub)
    _manifest(s / "n8", n=8, model_path=".", lora=False, **hub)
    _manifest(s / "n16", n=16, model_path=".", lora=True, **hub)
    _adapter(s / "n16" / "adapter", 8)
    _manifest(s / "n32", n=32, model_path="org/base", lora=True, **hub)  # merge_lora: false
    _adapter(s / "n32" / "adapter", 16)
    _manifest(s / "B8_r1", n=8, budget=8, sft_fraction=1.0, model_path="../n8", lora=False, **hub)
    return root


def test_vllm_switching_routes_only_the_base_and_its_adapters_to_the_shared_engine(mixed_lora_dir):
    plans = _plans(mixed_lora_dir, sweep.SweepOptions(backend="vllm"))
    s = mixed_lora_dir / "m" / "gsm8k"
    shared = "pretrained=org/base,revision=abc123,tokenizer_revision=abc123"
    assert plans["m/gsm8k/n0"].startswith(shared) and "+request" not in plans["m/gsm8k/n0"]
    assert plans["m/gsm8k/n16"].startswith(shared) and plans["m/gsm8k/n16"].endswith("=n16")
    assert plans["m/gsm8k/n32"].startswith(shared) and plans["m/gsm8k/n32"].endswith("=n32")
    assert "max_lora_rank=16" in plans["m/gsm8k/n0"]
    # the full fine-tune and the pointer at it: its own weights, never the base engine
    own = f"pretrained={(s / 'n8').resolve()}"
    assert plans["m/gsm8k/n8"] == plans["m/gsm8k/B8_r1"] == own


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_without_switching_an_unmerged_lora_is_served_with_its_adapter(mixed_lora_dir, backend):
    opts = sweep.SweepOptions(backend=backend, lora_switching=False)
    plans = _plans(mixed_lora_dir, opts)
    s = mixed_lora_dir / "m" / "gsm8k"
    adapter = "peft" if backend == "hf" else "lora_local_path"
    assert f"{adapter}={s / 'n32' / 'adapter'}" in plans["m/gsm8k/n32"]
    assert plans["m/gsm8k/n32"].startswith("pretrained=org/base,revision=abc123")
    assert plans["m/gsm8k/n16"].startswith(f"pretrained={(s / 'n16').resolve()}")  # merged copy
    assert "revision" not in plans["m/gsm8k/n16"] and adapter not in plans["m/gsm8k/n16"]
    assert plans["m/gsm8k/n0"].startswith("pretrained=org/base,revision=abc123")
    assert adapter not in plans["m/gsm8k/n0"]


def test_a_lora_checkpoint_without_its_adapter_fails_instead_of_scoring_the_base(tmp_path):
    root = tmp_path / "runs" / "exp"
    _manifest(root / "m/gsm8k/n0", n=0, model_path="org/base", base_model="org/base", lora=False)
    _manifest(root / "m/gsm8k/n8", n=8, model_path="org/base", base_model="org/base", lora=True)
    plans = _plans(root, sweep.SweepOptions(backend="hf"))
    assert plans["m/gsm8k/n8"].startswith("FAILED") and "adapter" in plans["m/gsm8k/n8"]
    assert plans["m/gsm8k/n0"].startswith("pretrained=org/base")  # the rest goes on


def test_copied_run_dir_with_relative_paths_serves_its_own_weights(mixed_lora_dir, tmp_path):
    copy = tmp_path / "elsewhere" / "exp"
    shutil.copytree(mixed_lora_dir, copy)
    plans = _plans(copy, sweep.SweepOptions(backend="hf"))
    assert plans["m/gsm8k/n8"] == f"pretrained={(copy / 'm/gsm8k/n8').resolve()}"
    assert plans["m/gsm8k/B8_r1"] == plans["m/gsm8k/n8"]


def test_legacy_absolute_paths_of_a_copied_or_moved_run_dir_are_named(tmp_path):
    from trainers.manifest import relocate

    original = tmp_path / "a" / "exp"
    ckpt = _manifest(original / "m/gsm8k/n8", n=8, model_path="", base_model="org/base")
    manifest = json.loads((ckpt / "sah_manifest.json").read_text())
    manifest["model_path"] = str(ckpt.resolve())  # as manifests were written before
    (ckpt / "sah_manifest.json").write_text(json.dumps(manifest))
    copy = tmp_path / "b" / "exp"
    shutil.copytree(original, copy)
    # copied: the absolute path names the original's weights -> a clear error, not a guess
    with pytest.raises(sweep.SweepError, match=r"another copy of this run directory.*relocate"):
        sweep.discover(copy)[0].serving()
    shutil.rmtree(original)  # moved: the absolute path no longer exists
    with pytest.raises(sweep.SweepError, match="relocate"):
        sweep.discover(copy)[0].serving()
    assert relocate(copy) == [copy / "m/gsm8k/n8/sah_manifest.json"]
    assert sweep.discover(copy)[0].serving().weights == str((copy / "m/gsm8k/n8").resolve())


def test_a_checkpoint_that_fails_to_load_is_reported_and_the_rest_go_on(run_dir, monkeypatch):
    def load(args, opts):
        if "n32" in args:
            raise OSError("model.safetensors: truncated file")
        return SimpleNamespace()

    evaluated = []
    monkeypatch.setattr(sweep, "_load_lm", load)
    monkeypatch.setattr(
        sweep, "evaluate_unit", lambda lm, u, tm, o, r=None: evaluated.append(u.key) or True
    )
    report = sweep.run_units(sweep.plan(sweep.discover(run_dir), TASKS), None, OPTS)
    assert sorted(rel for rel, _, _ in report.failed) == ["tiny/gsm8k/n32"] * 2
    assert all("truncated file" in why for _, _, why in report.failed)
    assert len(evaluated) == len(report.done) == 4


def test_missing_vllm_is_a_clear_error_naming_the_extra(run_dir, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    assert sweep.main([str(run_dir), "--tasks", "sah_gsm8k", "--backend", "vllm"]) == 2
    err = capsys.readouterr().err
    assert "'.[vllm]'" in err and "install_vllm_cpu" in err


def test_ray_asks_for_tensor_times_data_parallel_gpus():
    vllm = sweep.SweepOptions(
        backend="vllm", model_args="tensor_parallel_size=2,data_parallel_size=2"
    )
    assert sweep.ray_num_gpus(vllm) == 4
    assert sweep.ray_num_gpus(sweep.SweepOptions(backend="vllm")) == 1
    assert sweep.ray_num_gpus(sweep.SweepOptions(backend="hf", device="cpu")) == 0
    assert sweep.ray_num_gpus(sweep.SweepOptions(backend="hf", device="cuda:0")) == 1
    assert sweep.ray_num_gpus(vllm, override=8) == 8
    parser = sweep.build_parser()
    args = parser.parse_args(
        ["r", "--tasks", "t", "--backend", "vllm", "--tensor_parallel_size", "2"]
    )
    assert sweep.ray_num_gpus(sweep.options_from_args(args)) == 2


def test_dry_run_shows_what_scores_each_unit(mixed_lora_dir, capsys):
    assert sweep.main([str(mixed_lora_dir), "--tasks", "sah_gsm8k", "--dry_run"]) == 0
    lines = dict(line.split("\t")[1::2] for line in capsys.readouterr().out.splitlines())
    s = mixed_lora_dir / "m" / "gsm8k"
    assert lines["m/gsm8k/n0"] == "org/base@abc123"
    assert lines["m/gsm8k/n32"] == f"org/base@abc123 + adapter {s / 'n32' / 'adapter'}"
    assert lines["m/gsm8k/B8_r1"] == lines["m/gsm8k/n8"] == str((s / "n8").resolve())


# ----------------------------------------------------------------------------- the ledger
def _one_unit(run_dir: Path) -> list[sweep.Unit]:
    return sweep.plan(sweep.discover(run_dir, "*/n8"), ["sah_gsm8k"])


def test_results_of_other_settings_are_reported_not_reused_and_overwrite_sets_them_aside(
    run_dir, task_manager, fixture_env
):
    from dataclasses import replace

    units = _one_unit(run_dir)
    out_dir = units[0].out_dir
    assert sweep.run_units(units, task_manager, OPTS).done == [units[0].key]
    first = next(out_dir.glob("results_*.json"))
    for changed in (replace(OPTS, limit=3), replace(OPTS, gen_kwargs="max_gen_toks=8"),
                    replace(OPTS, seed=7)):  # fmt: skip
        report = sweep.run_units(units, task_manager, changed)
        assert report.done == [] and report.model_loads == 0
        assert len(report.stale) == 1 and "differs in:" in report.stale[0][2]
    assert "limit" in sweep.run_units(units, task_manager, replace(OPTS, limit=3)).stale[0][2]
    assert list(out_dir.glob("results_*.json")) == [first]  # kept, not silently replaced
    report = sweep.run_units(units, task_manager, replace(OPTS, limit=3, overwrite=True))
    assert report.done == [units[0].key]
    new = json.loads(next(out_dir.glob("results_*.json")).read_text())
    assert new["n-samples"]["sah_gsm8k"]["effective"] == 3
    assert [p.name for p in out_dir.glob("superseded/*/results_*.json")] == [first.name]
    assert sweep.run_units(units, task_manager, replace(OPTS, limit=3)).skipped == [units[0].key]


def test_torn_results_are_set_aside_and_evaluated_again(run_dir, task_manager, fixture_env):
    units = _one_unit(run_dir)
    out_dir = units[0].out_dir
    out_dir.mkdir(parents=True)
    (out_dir / "results_2026-01-01T00-00-00.json").write_text("")  # a 0-byte file (kill, full disk)
    report = sweep.run_units(units, task_manager, OPTS)
    assert report.done == [units[0].key] and not report.failed
    assert len(list(out_dir.glob("superseded/*/results_*.json"))) == 1
    assert _state(units[0], task_manager) == "done"


def test_a_results_write_lm_eval_swallowed_fails_the_unit(
    run_dir, task_manager, fixture_env, monkeypatch
):
    from lm_eval.loggers import EvaluationTracker

    # lm-eval logs and swallows an OSError while writing (e.g. ENOSPC): nothing is written
    monkeypatch.setattr(EvaluationTracker, "save_results_aggregated", lambda self, **kw: None)
    units = _one_unit(run_dir)
    report = sweep.run_units(units, task_manager, OPTS)
    assert [k for k, *_ in report.failed] == [
        "tiny/gsm8k/n8"
    ] and "0 results files" in report.failed[0][2]
    assert not list(units[0].out_dir.glob("results_*.json"))


def test_one_writer_per_unit(run_dir, task_manager, fixture_env, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    units = _one_unit(run_dir)
    lock = units[0].lock_path
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{socket.gethostname()} {holder.pid}")  # a live sweep holds the unit
        report = sweep.run_units(units, task_manager, OPTS)
        assert report.done == [] and len(report.busy) == 1 and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock is taken over
    report = sweep.run_units(units, task_manager, OPTS)
    assert report.done == [units[0].key] and not lock.exists()
    assert os.getpid() != holder.pid


def test_the_request_counts_local_data_by_content(
    task_manager, fixtures_dir, tmp_path, monkeypatch
):
    from sah_tasks import ledger

    data = tmp_path / "test.jsonl"
    data.write_bytes((fixtures_dir / "gsm8k_test.jsonl").read_bytes())

    def fp(**settings):
        return ledger.fingerprint(ledger.Ledger(task_manager).request("sah_gsm8k", {}, settings))

    monkeypatch.setenv("SAH_GSM8K_DATA", str(data))
    by_env = fp(metadata=None)
    with_metadata = fp(metadata={"data_files": str(data)})
    data.write_bytes(data.read_bytes().replace(b"apples", b"pears", 1))  # same path, new data
    assert fp(metadata=None) != by_env
    assert fp(metadata={"data_files": str(data)}) != with_metadata


def test_a_recorded_chat_template_does_not_leak_to_the_next_checkpoint_on_one_engine(tmp_path):
    import hashlib

    template = tmp_path / "t.jinja"
    template.write_text("{{ messages[0]['content'] }}")
    record = {"path": str(template), "sha256": hashlib.sha256(template.read_bytes()).hexdigest()}
    with_template = _manifest(tmp_path / "a", n=8, model_path=".", config={"chat_template": record})
    plain = _manifest(tmp_path / "b", n=16, model_path=".")
    lm = SimpleNamespace(tokenizer=SimpleNamespace(chat_template="OWN"))
    units = [sweep.Unit(sweep.Checkpoint(p, p.name, json.loads((p / "sah_manifest.json").read_text())), "t")
             for p in (with_template, plain)]  # fmt: skip
    sweep._use_checkpoint_template(lm, units[0], True)
    assert lm.tokenizer.chat_template == template.read_text()
    sweep._use_checkpoint_template(lm, units[1], True)
    assert lm.tokenizer.chat_template == "OWN"


@pytest.mark.parametrize(
    "results, sample",
    [
        ({"n-samples": ["t"]}, {"doc_id": 0}),  # n-samples not a mapping
        ({"n-samples": {"t": {"effective": [1]}}}, {"doc_id": 0}),  # count not a number
        ({"n-samples": {"t": {"effective": 1}}}, {"doc_id": [0]}),  # doc_id unhashable
    ],
)
def test_malformed_results_are_torn_not_a_traceback(tmp_path, results, sample):
    """A hand-edited or foreign results file is 'torn' (set aside, evaluated again): before,
    these raised AttributeError/TypeError out of the sweep's triage."""
    from sah_tasks import ledger

    (tmp_path / "results_2024.json").write_text(json.dumps({"results": {"t": {}}, **results}))
    (tmp_path / "samples_t_2024.jsonl").write_text(json.dumps(sample) + "\n")
    assert ledger.status(tmp_path, "t", {})[0] == "torn"


def test_results_with_a_foreign_sah_entry_are_stale(tmp_path):
    from sah_tasks import ledger

    n = {"n-samples": {"t": {"effective": 1}}, "sah": ["not", "ours"]}
    (tmp_path / "results_2024.json").write_text(json.dumps({"results": {"t": {}}, **n}))
    (tmp_path / "samples_t_2024.jsonl").write_text(json.dumps({"doc_id": 0}) + "\n")
    assert ledger.status(tmp_path, "t", {})[0] == "stale"

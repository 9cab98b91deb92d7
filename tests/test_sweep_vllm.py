"""`sah-eval sweep --backend vllm` against the real vLLM engine (vLLM's CPU build, `make setup`).

One run directory mixes every kind of checkpoint a study produces: the base (n0), a full
fine-tune, a merged LoRA scale, an unmerged LoRA scale (adapter only) and a budget point with
r = 1 that points at the full fine-tune. Each is scored by a copy of that run directory on
`--backend hf` (the reference: its own weights, or base + its adapter through PEFT) and on vLLM
with LoRA switching (one engine per base model). Every checkpoint must be scored as itself: its
vLLM generations equal its HF ones, and differ from the base model's.

Engine starts are the cost (~15-25 s each here): the module starts two, shared by all tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psutil
import pytest
import vllm as _vllm  # noqa: F401  (installed by `make setup`: these tests never skip)

from sah_tasks import sweep

TASK = "sah_gsm8k"
# The real engine on a shared CPU: a fixed small KV cache (the default is a fraction of the
# machine's memory), no torch.compile warm-up, float32 to match the hf reference.
VLLM_ARGS = "dtype=float32,kv_cache_memory_bytes=268435456,enforce_eager=True,max_model_len=1024"
COMMON = dict(batch_size="8", limit=4, gen_kwargs="max_gen_toks=12", device="cpu")


def _write(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sah_manifest.json").write_text(json.dumps({"schema_version": 1, **manifest}))
    (folder / "COMPLETED").write_text("")
    return folder


def _perturbed_copy(base: Path, out: Path, seed: int) -> None:
    """A 'full fine-tune': the base weights moved far enough to change greedy generations."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


def _random_adapter(base: Path, folder: Path, seed: int, rank: int, merged_into: Path | None):
    """A LoRA adapter with random A and B (a trained one is never the identity), saved as
    `folder/adapter/`; with `merged_into`, also the merged weights, as the trainers write them."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                        init_lora_weights=False)  # fmt: skip
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder / "adapter")
    if merged_into is not None:
        peft_model.merge_and_unload().save_pretrained(merged_into)
        AutoTokenizer.from_pretrained(base).save_pretrained(merged_into)


@pytest.fixture(scope="module")
def mixed_run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vllm_sweep") / "runs" / "exp"
    scales = root / "tiny" / "gsm8k"
    base = str(tiny_model_dir)
    lora = {"base_model": base, "lora": True, "stage": "sft"}
    _write(scales / "n0", {"n": 0, "model_path": base, "base_model": base, "lora": False})
    _perturbed_copy(tiny_model_dir, scales / "n8", seed=1)
    _write(scales / "n8", {"n": 8, "model_path": ".", "base_model": base, "lora": False})
    _random_adapter(tiny_model_dir, scales / "n16", seed=2, rank=8, merged_into=scales / "n16")
    _write(scales / "n16", {"n": 16, "model_path": ".", **lora})
    _random_adapter(tiny_model_dir, scales / "n32", seed=3, rank=16, merged_into=None)
    _write(scales / "n32", {"n": 32, "model_path": base, **lora})  # merge_lora: false
    _write(scales / "B8_r1", {"n": 8, "budget": 8, "sft_fraction": 1.0, "model_path": "../n8",
                              "base_model": base, "lora": False, "stage": "sft"})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def task_manager():
    from sah_tasks.cli import install_task_path

    install_task_path()
    from lm_eval.tasks import TaskManager

    return TaskManager()


@pytest.fixture(scope="module", autouse=True)
def gsm8k_fixture(fixtures_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    yield
    mp.undo()


def _engine_processes(before: frozenset[int] = frozenset()) -> list[str]:
    """Command lines of this process's children started since `before` (pids), but
    multiprocessing's resource tracker (one per process for its lifetime, started by the first
    spawn). Children older than the sweep (e.g. the code sandbox's idle zygotes, kept for the
    process's lifetime when an executor test ran first) are not an engine's."""
    lines = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        try:  # an exited engine core not yet reaped is a zombie: gone, its memory freed
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                lines.append(" ".join(child.cmdline())[:200])
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return [line for line in lines if "multiprocessing.resource_tracker" not in line]


def _sweep(run_dir: Path, task_manager, **opts):
    """A real sweep; records the processes alive in this process tree before every load."""
    children_at_load: list[list[str]] = []
    real_load = sweep._load_lm
    before = frozenset(p.pid for p in psutil.Process().children(recursive=True))

    def load(args, o):
        children_at_load.append(_engine_processes(before))
        return real_load(args, o)

    mp = pytest.MonkeyPatch()
    mp.setattr(sweep, "_load_lm", load)
    try:
        units = sweep.plan(sweep.discover(run_dir), [TASK])
        report = sweep.run_units(units, task_manager, sweep.SweepOptions(**COMMON, **opts))
    finally:
        mp.undo()
    return report, children_at_load


def _generations(run_dir: Path) -> dict[str, list]:
    """checkpoint -> the generated text of each sample, in document order.

    A random tiny model emits byte tokens that are not valid UTF-8: HF's decoder turns them into
    U+FFFD, vLLM's incremental detokenizer withholds them; the tokens are the same, so the
    comparison drops U+FFFD.
    """
    out = {}
    for samples in sorted(run_dir.rglob(f"eval/{TASK}/samples_*.jsonl")):
        rows = [json.loads(line) for line in samples.read_text().splitlines() if line]
        rel = samples.parent.parent.parent.relative_to(run_dir).as_posix()
        resps = [r["resps"] for r in sorted(rows, key=lambda r: r["doc_id"])]
        out[rel] = json.loads(json.dumps(resps).replace("\\ufffd", ""))
    return out


@pytest.fixture(scope="module")
def scored(mixed_run_dir, task_manager, tmp_path_factory):
    """The same run directory, copied twice (its manifests hold relative paths), scored on hf
    and on the real vLLM engine with LoRA switching."""
    copies = tmp_path_factory.mktemp("copies")
    hf_dir, vllm_dir = copies / "hf" / "exp", copies / "vllm" / "exp"
    shutil.copytree(mixed_run_dir, hf_dir)
    shutil.copytree(mixed_run_dir, vllm_dir)
    hf_report, _ = _sweep(hf_dir, task_manager, backend="hf", model_args="dtype=float32")
    older = frozenset(p.pid for p in psutil.Process().children(recursive=True))
    vllm_report, children = _sweep(vllm_dir, task_manager, backend="vllm", model_args=VLLM_ARGS)
    return {
        "hf": (hf_report, _generations(hf_dir)),
        "vllm": (vllm_report, _generations(vllm_dir)),
        "children_at_load": children,
        "older_children": older,
        "vllm_dir": vllm_dir,
    }


def test_every_checkpoint_is_scored_as_itself_on_the_real_engine(scored):
    hf_report, hf = scored["hf"]
    vllm_report, vllm = scored["vllm"]
    assert not hf_report.failed and not vllm_report.failed, (hf_report, vllm_report)
    rels = ["tiny/gsm8k/B8_r1", "tiny/gsm8k/n0", "tiny/gsm8k/n16", "tiny/gsm8k/n32",
            "tiny/gsm8k/n8"]  # fmt: skip
    assert sorted(hf) == sorted(vllm) == rels
    for rel in rels:  # vLLM (switching adapters on one engine) == hf (own weights / PEFT)
        assert vllm[rel] == hf[rel], rel
    for rel in ("tiny/gsm8k/n8", "tiny/gsm8k/n16", "tiny/gsm8k/n32"):
        assert vllm[rel] != vllm["tiny/gsm8k/n0"], f"{rel} was scored as the base model"
    assert vllm["tiny/gsm8k/B8_r1"] == vllm["tiny/gsm8k/n8"]  # the pointer is its SFT checkpoint


def test_engines_one_per_base_and_each_gone_before_the_next(scored):
    vllm_report, _ = scored["vllm"]
    # the base engine (n0 + both adapters) and the full fine-tune's (n8 + the r=1 pointer)
    assert vllm_report.model_loads == 2
    children = scored["children_at_load"]
    assert len(children) == 2 and children[0] == [], children
    assert children[1] == [], (
        f"the first engine's processes still ran at the second load: {children}"
    )
    # and the last one is gone when the sweep returns
    assert _engine_processes(scored["older_children"]) == []


def test_results_record_what_scored_them(scored):
    vllm_dir = scored["vllm_dir"]
    data = {
        p.parent.parent.parent.name: json.loads(p.read_text())["sah"]["served"]
        for p in vllm_dir.rglob(f"eval/{TASK}/results_*.json")
    }
    assert data["n32"]["adapter"].endswith("n32/adapter")
    assert data["n16"]["adapter"].endswith("n16/adapter")
    assert (
        data["n8"]["model"] == data["B8_r1"]["model"] == str((vllm_dir / "tiny/gsm8k/n8").resolve())
    )
    assert "adapter" not in data["n0"] or data["n0"]["adapter"] is None

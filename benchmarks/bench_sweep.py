"""The sweep's speed: pooled (the default) vs per-unit (`--per_unit`) vs one lm_eval per unit.

    python benchmarks/bench_sweep.py [--rounds 3] [--naive_rounds 1] [--sections hf,vllm,auto]
                                     [--profile]

Everything is measured in this one run, interleaved (round 1: A, B, C; round 2: A, B, C; ...),
on fresh copies of the same run directory, and reported as medians with the ratios; on a
shared machine the absolute times are noisy, the ratios much less so.

  hf    K=8 full checkpoints x T=4 tasks on the hf backend (CPU), each as a CLI process:
        A. `sah-eval sweep` (pooled: all tasks of a checkpoint in one lm-eval call)
        B. `sah-eval sweep --per_unit` (one lm-eval call per unit, as sweeps were before)
        C. one `lm_eval --include_path ...` process per (checkpoint, task), the naive loop
        D. the sweep as it was before pooling (git --baseline_rev, exported to a temp folder)
  vllm  K=4 LoRA adapters x T=2 tasks on the real vLLM engine (vLLM's CPU build), one engine
        started once for all rounds (its start is the same for both and is printed apart):
        A. pooled: every adapter's prompts in one generate call (sah_tasks/mixed.py)
        B. per-unit: adapter by adapter, one lm-eval call per unit
  auto  issue 17: `--batch_size auto --max_batch_size 16` on K=2 x T=2 of one shape (per-unit;
        the default bound 64 makes each detection 4x dearer on CPU), lm-eval's detection
        once per model shape (now) vs once per model vs once per unit (with
        sah_tasks.sweep.detect_batch_size_once narrowed or off)
--profile prints where a pooled hf sweep spends its time (cProfile, cumulative).

    python benchmarks/bench_sweep.py --throughput RUN_DIR --seconds S [--gpus G]

reports the generated tokens/s and GPU-seconds per checkpoint of a sweep of RUN_DIR that took
S seconds (the GPU recipe in docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
HF_TASKS = ["sah_gsm8k", "sah_gsm8k_fewshot", "sah_multihop", "sah_ifeval"]
VLLM_TASKS = ["sah_gsm8k", "sah_multihop"]
FIXTURES = REPO / "tests" / "fixtures"
ENV = {
    "SAH_GSM8K_DATA": str(FIXTURES / "gsm8k_test.jsonl"),
    "SAH_MULTIHOP_DATA": str(FIXTURES / "multihop_hotpotqa.jsonl"),
    "SAH_IFEVAL_DATA": str(FIXTURES / "ifeval_sample.jsonl"),
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
VLLM_ARGS = "dtype=float32,kv_cache_memory_bytes=268435456,enforce_eager=True,max_model_len=1024"


def write_manifest(folder: Path, n: int, model_path: str, **extra) -> None:
    manifest = {"schema_version": 1, "n": n, "model_path": model_path, "base_model": model_path,
                "lora": False, "stage": "base" if n == 0 else "sft", **extra}  # fmt: skip
    (folder / "sah_manifest.json").write_text(json.dumps(manifest))
    (folder / "COMPLETED").write_text("")


def full_run_dir(root: Path, model: Path, k: int) -> Path:
    """K full fine-tunes (copies of the tiny model) of one model and task."""
    run = root / "runs" / "hf"
    for i in range(k):
        ckpt = run / "tiny" / "gsm8k" / f"n{2**i}"
        shutil.copytree(model, ckpt)
        write_manifest(ckpt, 2**i, ".")
    return run


def lora_run_dir(root: Path, model: Path, k: int) -> Path:
    """K unmerged LoRA scales (random adapters, so each generates differently) on one base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = root / "runs" / "lora"
    for i in range(k):
        ckpt = run / "tiny" / "gsm8k" / f"n{2**i}"
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                            init_lora_weights=False)  # fmt: skip
        get_peft_model(base, config).save_pretrained(ckpt / "adapter")
        write_manifest(ckpt, 2**i, str(model), base_model=str(model), lora=True)
    return run


def clear_results(run: Path) -> None:
    for folder in list(run.rglob("eval")):
        if folder.is_dir():
            shutil.rmtree(folder)
    for folder in list(run.rglob("naive")):
        shutil.rmtree(folder, ignore_errors=True)


def timed(cmds: list[list[str]], run: Path, cwd: Path | None = None) -> float:
    clear_results(run)
    env = dict(os.environ, **ENV)
    t0 = time.perf_counter()
    for cmd in cmds:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def sweep_cmd(run: Path, tasks: list[str], *extra: str) -> list[str]:
    return [str(BIN / "sah-eval"), "sweep", str(run), "--tasks", ",".join(tasks), "--device",
            "cpu", "--dtype", "float32", "--limit", "4", "--gen_kwargs", "max_gen_toks=16",
            *extra]  # fmt: skip


def naive_cmds(run: Path, tasks: list[str]) -> list[list[str]]:
    return [
        [str(BIN / "lm_eval"), "--include_path", str(REPO / "sah_tasks"), "--model", "hf",
         "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", task, "--device", "cpu",
         "--batch_size", "4", "--limit", "4", "--gen_kwargs", "max_gen_toks=16",
         "--output_path", str(ckpt / "naive" / task), "--log_samples"]
        for ckpt in sorted((run / "tiny" / "gsm8k").iterdir()) for task in tasks
    ]  # fmt: skip


def report(title: str, times: dict[str, list[float]], units: int, base: str) -> None:
    print(f"\n{title}")
    med = {name: statistics.median(ts) for name, ts in times.items() if ts}
    for name, ts in times.items():
        if ts:
            runs = ", ".join(f"{t:.1f}" for t in ts)
            print(f"  {name:<34} median {med[name]:7.1f} s  ({med[name] / units:.2f} s/unit; "
                  f"runs: {runs})")  # fmt: skip
    for name in med:
        if name != base:
            print(f"  {name} / {base}: {med[name] / med[base]:.2f}x")


def baseline_sweep(root: Path, rev: str) -> tuple[list[str], Path] | None:
    """The sweep as it was at git `rev` (before pooling), run from an exported copy of its
    `sah_tasks` and `trainers` packages (and from that folder: `python -m` puts the working
    directory first on sys.path); None outside a git checkout."""
    folder = root / f"baseline-{rev}"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "sah_tasks", "trainers"],
                             capture_output=True)  # fmt: skip
    if archive.returncode != 0:
        print(f"(no baseline: git archive {rev} failed: {archive.stderr.decode()[-200:]})")
        return None
    folder.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return ["env", f"PYTHONPATH={folder}", sys.executable, "-m", "sah_tasks.sweep"], folder


def hf_section(root: Path, model: Path, rounds: int, naive_rounds: int, rev: str) -> None:
    run = full_run_dir(root, model, 8)
    before = baseline_sweep(root, rev) if rev else None
    names = ("A pooled sweep", "B --per_unit sweep", f"D sweep at git {rev}",
             "C lm_eval per unit (32 procs)")  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in names}
    flags = ["--batch_size", "4"]
    for r in range(rounds):
        times[names[0]].append(timed([sweep_cmd(run, HF_TASKS, *flags)], run))
        times[names[1]].append(timed([sweep_cmd(run, HF_TASKS, *flags, "--per_unit")], run))
        if before:
            cmd, folder = before
            times[names[2]].append(timed([cmd + sweep_cmd(run, HF_TASKS, *flags)[2:]], run, folder))
        if r < naive_rounds:
            times[names[3]].append(timed(naive_cmds(run, HF_TASKS), run))
    report("hf backend, K=8 checkpoints x T=4 tasks, --limit 4 (CLI processes)", times, 32,
           "A pooled sweep")  # fmt: skip


def auto_section(root: Path, model: Path, rounds: int) -> None:
    run = full_run_dir(root / "auto", model, 2)
    tasks = ["sah_gsm8k", "sah_multihop"]
    argv = [str(run), "--tasks", ",".join(tasks), "--device", "cpu", "--dtype", "float32",
            "--limit", "4", "--gen_kwargs", "max_gen_toks=16", "--batch_size", "auto",
            "--max_batch_size", "16", "--per_unit"]  # fmt: skip
    patch = "import sys; from sah_tasks import sweep; once = sweep.detect_batch_size_once; "
    run_sweep = "raise SystemExit(sweep.main(sys.argv[1:]))"
    variants = {  # name -> what replaces sah_tasks.sweep.detect_batch_size_once
        "detect once per model shape (now)": "",
        "detect once per model (before)": "sweep.detect_batch_size_once = lambda lm, shared=None: once(lm); ",
        "detect once per unit (issue 17)": "sweep.detect_batch_size_once = lambda lm, shared=None: None; ",
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, replace in variants.items():
            times[name].append(
                timed([[sys.executable, "-c", patch + replace + run_sweep, *argv]], run)
            )
    report("--batch_size auto, hf, K=2 x T=2 (one shape), --per_unit (issue 17)", times, 4,
           "detect once per model shape (now)")  # fmt: skip


def vllm_section(root: Path, model: Path, rounds: int) -> None:
    from tqdm.auto import tqdm

    from sah_tasks import sweep

    os.environ.update(ENV)
    run = lora_run_dir(root, model, 4)
    tm = sweep.task_manager_for(VLLM_TASKS)
    modes = {"A pooled (one generate call)": True, "B per-unit, adapter by adapter": False}
    opts = {name: sweep.SweepOptions(backend="vllm", model_args=VLLM_ARGS, device="cpu",
                                     batch_size="auto", limit=4, gen_kwargs="max_gen_toks=16",
                                     pooled=pooled)  # fmt: skip
            for name, pooled in modes.items()}  # fmt: skip
    first = opts["A pooled (one generate call)"]

    def group_of(o):
        rep = sweep.SweepReport()
        units = sweep.plan(sweep.discover(run), VLLM_TASKS)
        todo, requests = sweep.triage(units, sweep.ledger.Ledger(tm), o, rep)
        (group,) = sweep.engine_groups(todo, o, rep)
        return group, requests

    group, _ = group_of(first)
    t0 = time.perf_counter()
    lm = sweep._load_lm(sweep.engine_model_args(group, first), first)
    start = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, o in opts.items():
            clear_results(run)
            group, requests = group_of(o)
            rep = sweep.SweepReport()
            t0 = time.perf_counter()
            with sweep.pooled_overheads(o):
                sweep._run_members(lm, group, tm, o, rep, tqdm(disable=True), requests)
            times[name].append(time.perf_counter() - t0)
            assert len(rep.done) == 8 and not rep.failed, rep
    sweep._close(lm)
    print(f"\nvLLM engine start (once, not in the times below): {start:.1f} s")
    report("vLLM CPU, K=4 LoRA adapters x T=2 tasks, --limit 4, one engine", times, 8,
           "A pooled (one generate call)")  # fmt: skip


def profile_pooled(root: Path, model: Path) -> None:
    import cProfile
    import pstats

    from sah_tasks import sweep

    os.environ.update(ENV)
    run = full_run_dir(root / "profile", model, 8)
    profiler = cProfile.Profile()
    profiler.enable()
    sweep.main([*sweep_cmd(run, HF_TASKS, "--batch_size", "4")[2:]])
    profiler.disable()
    print("\nwhere a pooled hf sweep (K=8 x T=4) spends its time (cumulative, top 25):")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def throughput(run: Path, seconds: float, gpus: float) -> None:
    """Generated tokens per second and GPU-seconds per checkpoint of a finished sweep of `run`
    that took `seconds` of wall time on `gpus` GPUs (the GPU recipe in docs/evaluation.md)."""
    from transformers import AutoTokenizer

    from sah_tasks import sweep

    tokenizers: dict[str, object] = {}
    total, per_checkpoint = 0, {}
    for checkpoint in sweep.discover(run):
        serving = checkpoint.serving()
        name = serving.base or serving.weights
        if name not in tokenizers:
            tokenizers[name] = AutoTokenizer.from_pretrained(name)
        tok = tokenizers[name]
        tokens = 0
        for samples in checkpoint.path.glob("eval/*/samples_*.jsonl"):
            seen = set()  # lm-eval writes one line per document and filter
            for line in samples.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else None
                if row is None or row["doc_id"] in seen:
                    continue
                seen.add(row["doc_id"])
                for resp in row["resps"]:
                    for text in resp if isinstance(resp, list) else [resp]:
                        tokens += len(tok(str(text), add_special_tokens=False)["input_ids"])
        per_checkpoint[checkpoint.rel] = tokens
        total += tokens
    k = len(per_checkpoint)
    for rel, tokens in per_checkpoint.items():
        print(f"  {rel:<40} {tokens:>10} generated tokens")
    print(f"{k} checkpoints, {total} generated tokens in {seconds:.1f} s: "
          f"{total / seconds:,.0f} tokens/s, {seconds * gpus / k:.1f} GPU-seconds per checkpoint")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--naive_rounds", type=int, default=1, help="rounds that include C")
    p.add_argument("--sections", default="hf,vllm,auto")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--baseline_rev", default="dd38166",
                   help="git revision of the sweep before pooling, timed as D ('' to skip)")  # fmt: skip
    p.add_argument("--throughput", type=Path, metavar="RUN_DIR",
                   help="only report tokens/s and GPU-seconds per checkpoint of a sweep of "
                   "RUN_DIR that took --seconds on --gpus GPUs")  # fmt: skip
    p.add_argument("--seconds", type=float, help="wall time of that sweep")
    p.add_argument("--gpus", type=float, default=1.0)
    args = p.parse_args()
    if args.throughput:
        if not args.seconds:
            p.error("--throughput needs --seconds (the sweep's wall time)")
        throughput(args.throughput, args.seconds, args.gpus)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from trainers.tiny_model import build_tiny_model

    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    model = build_tiny_model(root / "tiny")
    sections = set(args.sections.split(","))
    print(f"bench_sweep: {args.rounds} interleaved round(s); cpu count {os.cpu_count()}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")  # fmt: skip
    try:
        if "hf" in sections:
            hf_section(root, model, args.rounds, args.naive_rounds, args.baseline_rev)
        if "auto" in sections:
            auto_section(root, model, args.rounds)
        if "vllm" in sections:
            vllm_section(root, model, args.rounds)
        if args.profile:
            profile_pooled(root, model)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

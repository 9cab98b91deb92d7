"""Every shell command of README.md and docs/*.md, extracted from the Markdown and exercised.

The commands are read from the pages when the tests run, so docs and tests cannot drift:

* each fenced shell block (```bash, ```sh, or an unlabelled fence whose first line starts with a
  known command) is split into commands (`\\` continuations and loops joined, comments dropped);
* every command must have an entry in COMMANDS below (keyed by its exact text): a new or edited
  command fails `test_every_doc_command_is_classified` with a ready-to-paste entry, and an entry
  no page contains any more fails `test_no_stale_entries`;
* every command gets the static checks: the repository files it names exist, and every `--flag`
  it passes is in the `--help` of the tool it calls (sah-eval, lm_eval, the sweep, the trainers,
  accelerate, torchrun, the analysis, `sah run`, the Facts100 validator);
* CPU commands run for real, in a scratch folder that links the repository's files (so `runs/`,
  `out/` land there), on the tiny model and the offline fixtures, in page order. Slow ones run in
  a reduced form (fewer items, steps or scales) and in their full form with SAH_DOCS_FULL=1:

      SAH_DOCS_FULL=1 .venv/bin/python -m pytest -q tests/test_docs_commands.py

  Commands that need a GPU, the hub or hours run a CPU-safe form where one exists (`--dry_run`,
  `make -n`, `--help`), and otherwise get the static checks only.

To update after a docs edit: run this file; paste the printed entry into COMMANDS, pick its kind
(cpu / gpu / hub / long / setup / synopsis), and give it a run form if the page's own command
cannot run here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from conftest import fixture_env

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# An unlabelled fence is a shell block when its first line starts with one of these.
COMMAND_WORDS = {"python", "sah", "sah-eval", "lm_eval", "make", "pip", "accelerate", "torchrun"}
FULL = os.environ.get("SAH_DOCS_FULL") == "1"


# ----------------------------------------------------------------------------- extraction
@dataclass(frozen=True)
class DocCommand:
    page: str
    line: int
    text: str  # one logical command, whitespace-normalised

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _fences(text: str):
    """(first line number, language, lines) of every fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, body = i + 2, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        yield start, m.group(1).lower(), body
        i += 1


def _is_shell(lang: str, body: list[str]) -> bool:
    if lang in SHELL_LANGS:
        return True
    if lang:
        return False
    first = next((strip_comment(b) for b in body if strip_comment(b).strip()), "")
    return bool(first) and first.split()[0] in COMMAND_WORDS


def _commands_of_block(page: str, start: int, body: list[str]) -> list[DocCommand]:
    """Logical commands: `\\` continuations, the lines of a multi-line loop, and indented lines
    after a command (a synopsis) belong to the command before them."""
    out: list[DocCommand] = []
    cmd, first, in_loop = "", 0, False
    for offset, raw in enumerate(body):
        line = strip_comment(raw).strip()
        if not line:
            continue
        if cmd.endswith("\\"):
            cmd = cmd[:-1].rstrip() + " " + line
        elif cmd and in_loop:
            cmd += (" " if cmd.endswith("do") else "; ") + line
        elif cmd and raw[:1].isspace():
            cmd += " " + line
        else:
            if cmd:
                out.append(DocCommand(page, first, " ".join(cmd.split())))
            cmd, first = line, start + offset
            in_loop = line.split()[0] in ("for", "while") and not re.search(r"\bdone\b", line)
            continue
        if in_loop and re.search(r"(^|[;\s])done\b", line):
            in_loop = False
    if cmd:
        out.append(DocCommand(page, first, " ".join(cmd.split())))
    return out


def extract(page: str) -> list[DocCommand]:
    text = (REPO / page).read_text(encoding="utf-8")
    found: list[DocCommand] = []
    for start, lang, body in _fences(text):
        if _is_shell(lang, body):
            found += _commands_of_block(page, start, body)
    return found


def all_commands() -> list[DocCommand]:
    return [c for page in PAGES for c in extract(page)]


# ----------------------------------------------------------------------------- classification
KINDS = {
    "cpu": "runs here as written (or in a reduced form)",
    "gpu": "needs a GPU (vLLM on CUDA, FSDP/DeepSpeed, tensor parallel)",
    "hub": "needs the Hugging Face hub (gated weights, hub data)",
    "long": "runs on CPU but takes minutes (the vLLM CPU engine)",
    "setup": "sets up an environment (make, pip, git, venv)",
    "synopsis": "a usage line with placeholders (`...`, RUN_DIR), not a command",
}


@dataclass(frozen=True)
class Entry:
    """How one documented command is exercised.

    `run` is the form that runs here (`{cmd}` is the command as written; None: static checks
    only); `full`, when given, replaces it with SAH_DOCS_FULL=1; `needs` names what must exist
    in the scratch folder first; `expect` is text the run's output must contain."""

    kind: str
    why: str
    run: str | None = None
    full: str | None = None
    needs: tuple[str, ...] = ()
    expect: str | None = None
    subs: tuple[tuple[str, str], ...] = ()

    def form(self) -> str | None:
        return self.full if FULL and self.full is not None else self.run


def cpu(why: str, run: str = "{cmd}", full: str | None = None, **kw) -> Entry:
    return Entry("cpu", why, run=run, full=full, **kw)


def static(kind: str, why: str, run: str | None = None, **kw) -> Entry:
    return Entry(kind, why, run=run, **kw)


# Smaller evaluation for `make test`: one item, short generations.
SMALL_EVAL = "--limit 1 --gen_kwargs max_gen_toks=8"
# Smaller training: two scales, two optimizer steps.
SMALL_SFT = "--scales 0 8 --max_steps 2"


def extras_exist(*extras: str) -> str:
    """A command that fails unless pyproject.toml declares these extras."""
    code = ("import tomllib; have = tomllib.load(open('pyproject.toml', 'rb'))['project']"
            f"['optional-dependencies']; missing = {set(extras)!r} - set(have); "
            "assert not missing, f'pyproject.toml has no extra(s) {missing}'")  # fmt: skip
    return f'python -c "{code}"'


TINY = (("pretrained=PATH", "pretrained=runs/tiny-model"),
        ("pretrained=<checkpoint>", "pretrained=runs/tiny-model"))  # fmt: skip

# Keyed by the command exactly as extracted (comments dropped, lines joined, spaces collapsed).
COMMANDS: dict[str, Entry] = {
    # --- README.md
    "make demo": static("setup", "installs, then runs the demo (tests/test_experiment.py runs "
                        "the demo itself); here: make's plan", run="make -n demo",
                        expect="sah_tasks.demo"),
    "make test": static("setup", "this very suite; here: make's plan", run="make -n test",
                        expect="pytest"),
    'make demo TORCH_CPU_PIP_ARGS="--index-url https://my.mirror/whl/cpu"': static(
        "setup", "the torch knob reaches pip (make's plan, no install)",
        run="{cmd}", subs=(("make demo", "make -n demo"),),
        expect='"torch==2.13.0" --index-url https://my.mirror/whl/cpu'),
    "pip install -e '.[vllm]'": static("setup", "GPU install; the extra must exist",
                                       run=extras_exist("vllm")),
    "sah-eval --model vllm --model_args pretrained=meta-llama/Meta-Llama-3-8B,dtype=bfloat16,gpu_memory_utilization=0.9 --tasks 'sah_*' --batch_size auto --confirm_run_unsafe_code --log_samples --output_path runs/llama3-8b/eval":
        static("gpu", "vLLM on a GPU, gated hub weights"),
    "lm_eval --include_path \"$(python -m sah_tasks path)\" --model vllm --model_args pretrained=meta-llama/Meta-Llama-3-8B --tasks sah_gsm8k,sah_ifeval":
        static("gpu", "vLLM on a GPU, gated hub weights"),
    "sah run configs/paper/experiments/llama3-8b.yaml": static(
        "gpu", "8 GPUs; here: its commands", run="{cmd} --dry_run", expect="[sah run] analyse:"),
    "sah-eval sweep runs/paper --tasks 'sah_*' --backend vllm --shard 0/4": static(
        "gpu", "vLLM; needs the paper's checkpoints"),
    "python -m analysis runs/paper": static("gpu", "needs the paper's results"),
    # --- docs/analysis.md
    "python -m analysis RUN_DIR [--out DIR] [--n-boot 1000] [--ci 0.90] [--metric TASK=METRIC[,FILTER]] [--targets 0.5,0.75] [--judge-url URL --judge-model NAME] [--strict]":
        static("synopsis", "usage line; its flags are checked against --help"),
    "python -m analysis plan (--pilot RUN_DIR | --accuracies A1,A2,...) [--half-width 0.02] ...":
        static("synopsis", "usage line; its flags are checked against --help"),
    "python -m analysis plan --accuracies 0.07,0.12,0.15,0.25,0.30 --scales 100,500,1000,5000,10000 --half-width 0.02 [--items 250,500,1000,1319,2000,4000] [--seeds 1,2,3,5,8] [--seed-sd 0.15]":
        cpu("usage line: its required part runs, fewer simulations",
            run="{required} --sims 100 --items 250,500 --seeds 1,2", full="{required}"),
    "python -m analysis plan --pilot runs/pilot [--curve 'llama-3-8b*'] --half-width 0.02 [--out plan.csv]":
        cpu("usage line: its required part runs on the synthetic pilot, fewer simulations",
            run="{required} --sims 100 --items 250,500 --seeds 1,2", full="{required}",
            needs=("synthetic",), subs=(("runs/pilot", "synth/synthetic"),)),
    "python -m analysis.synthetic /tmp/seeds --seeds 3 --seed-sd 0.15": cpu(
        "synthetic runs with 3 seeds", subs=(("/tmp/seeds", "seeds"),)),
    "python -m analysis /tmp/seeds/synthetic": cpu(
        "analysis of the seeded synthetic runs", run="{cmd} --n-boot 50 --formats png",
        full="{cmd}", needs=("synthetic-seeds",), subs=(("/tmp/seeds", "seeds"),)),
    "python -m analysis.synthetic /tmp/demo --with-budget": cpu(
        "synthetic run directories", subs=(("/tmp/demo", "synth"),)),
    "python -m analysis /tmp/demo/synthetic": cpu(
        "analysis of the synthetic runs", run="{cmd} --n-boot 50 --formats png",
        full="{cmd}", needs=("synthetic",), subs=(("/tmp/demo", "synth"),)),
    "python -m analysis.labels > my_labels.yaml": cpu("writes the default label map"),
    "python -m analysis runs/paper --labels my_labels.yaml --style my.mplstyle": cpu(
        "on the synthetic runs, with the default label map and the shipped style as the user's",
        run="{cmd} --n-boot 50 --formats png", full="{cmd}", needs=("synthetic", "labels"),
        subs=(("runs/paper", "synth/synthetic"), ("my.mplstyle", "analysis/sah.mplstyle"))),
    # --- docs/code-execution.md
    "sah-eval --model hf --model_args pretrained=<checkpoint> --tasks sah_humaneval_plus,sah_mbpp_plus --confirm_run_unsafe_code --output_path runs/.../eval":
        cpu("tiny model on the fixture problems", run=f"{{cmd}} {SMALL_EVAL}",
            full="{cmd} --limit 4", needs=("tiny-model",),
            subs=(*TINY, ("runs/.../eval", "runs/code/eval"))),
    "lm_eval --include_path \"$(python -c 'import sah_tasks; print(sah_tasks.TASKS_DIR)')\" --model hf --model_args pretrained=<checkpoint> --tasks sah_code --confirm_run_unsafe_code":
        cpu("tiny model on the fixture problems", run=f"{{cmd}} {SMALL_EVAL}",
            full="{cmd} --limit 4", needs=("tiny-model",), subs=TINY),
    # --- docs/evaluation.md
    "sah-eval sweep runs/paper --tasks sah_gsm8k,sah_gsm8k_fewshot --checkpoints '*/gsm8k/*' --backend vllm --dtype bfloat16 --tensor_parallel_size 1 --gpu_memory_utilization 0.9 --max_model_len 4096 --enable_prefix_caching":
        static("gpu", "vLLM on a GPU"),
    "sah-eval sweep runs/demo --tasks sah_gsm8k --backend hf --device cpu --dtype float32 --batch_size 4 --limit 20":
        cpu("the tiny SFT run of docs/training.md",
            run="{cmd} --limit 2 --gen_kwargs max_gen_toks=8", needs=("demo-run",)),
    "sah-eval sweep runs/paper --tasks 'sah_*' --dry_run": cpu(
        "on the tiny run directory instead of the paper's", needs=("demo-run",),
        subs=(("runs/paper", "runs/demo"),), expect="todo"),
    "sah-eval sweep runs/paper --tasks sah_gsm8k --backend vllm --models meta-llama/Meta-Llama-3-8B-Instruct@<revision> --models_prompt_format chat":
        static("hub", "a hub baseline on vLLM"),
    "sah-eval sweep runs/paper --tasks sah_gsm8k --models runs/paper/llama-3-8b/gsm8k/n1000/checkpoint-200":
        static("gpu", "needs a kept Trainer checkpoint of the paper's run"),
    "for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i sah-eval sweep runs/paper --tasks 'sah_*' --backend vllm --shard $i/4 & done; wait":
        static("gpu", "4 GPUs"),
    "sbatch --array=0-7 configs/slurm/sweep_array.sbatch runs/paper sah_gsm8k,sah_ifeval":
        static("gpu", "a SLURM cluster"),
    "sah-eval sweep runs/demo --tasks sah_gsm8k --backend vllm --dtype float32 --limit 20 --model_args kv_cache_memory_bytes=268435456,enforce_eager=True --max_model_len 1024":
        static("long", "vLLM's CPU engine (minutes); here: the plan", run="{cmd} --dry_run",
               # another --limit than the hf sweep's, so the units are evaluated again here
               full="{cmd} --limit 3 --gen_kwargs max_gen_toks=8 --overwrite",
               needs=("demo-run",), expect="tiny-llama/gsm8k/n8"),
    "python benchmarks/bench_sweep.py --rounds 2 --naive_rounds 1": static(
        "long", "a benchmark (minutes); here: its flags"),
    "python benchmarks/bench_sweep.py --sections vllm --rounds 3": static(
        "long", "a benchmark on vLLM's CPU engine (minutes); here: its flags"),
    "python benchmarks/bench_sweep.py --sections hf --rounds 1 --profile": static(
        "long", "a benchmark (minutes); here: its flags"),
    'for mode in pooled per_unit; do rsync -a --exclude eval runs/paper/ /scratch/sweep-$mode/; extra=$([ $mode = per_unit ] && echo --per_unit); /usr/bin/time -f %e -o /scratch/$mode.sec sah-eval sweep /scratch/sweep-$mode --tasks sah_gsm8k,sah_ifeval --backend vllm --dtype bfloat16 --gpu_memory_utilization 0.9 --max_model_len 4096 $extra; python benchmarks/bench_sweep.py --throughput /scratch/sweep-$mode --seconds "$(cat /scratch/$mode.sec)" --gpus 1; done':
        static("gpu", "a GPU and the paper's checkpoints"),
    # --- docs/experiment.md
    "sah run configs/paper/experiments/llama3-8b.yaml --stages eval,analyse": static(
        "gpu", "vLLM; here: its commands", run="{cmd} --dry_run", expect="[sah run] eval:"),
    "sah run configs/paper/experiments/llama3-8b.yaml --dry_run": cpu(
        "prints the commands", expect="[sah run] train:"),
    # --- docs/facts100.md
    "python -m sah_tasks.facts100 validate sah_tasks/facts100/data/facts100.jsonl": cpu(
        "the shipped file", expect="OK"),
    "python -m sah_tasks.facts100 validate my_facts.jsonl --count 0": cpu(
        "on a copy of the shipped file", subs=(("my_facts.jsonl", "sah_tasks/facts100/data/facts100.jsonl"),),
        expect="OK"),
    "sah-eval --model hf --model_args pretrained=PATH,dtype=float32 --device cpu --tasks sah_facts100_direct,sah_facts100_multihop --log_samples --output_path out/":
        cpu("tiny model", run=f"{{cmd}} {SMALL_EVAL}", full="{cmd}", needs=("tiny-model",),
            subs=TINY),
    "python -m trainers.launch --accelerate_config configs/accelerate/fsdp.yaml sft --config configs/paper/llama3-8b_multihop.yaml --task multihop_closedbook --experiment facts100 --scales 0 1000":
        static("gpu", "FSDP on GPUs, hub data and weights"),
    "python -m trainers.launch --accelerate_config configs/accelerate/fsdp.yaml sft --config configs/paper/facts100_experiment.yaml":
        static("gpu", "FSDP on GPUs, gated weights"),
    "python -m trainers.launch --accelerate_config configs/accelerate/fsdp.yaml sft --config configs/paper/facts100_experiment.yaml --model_name_or_path runs/facts100/llama-3-8b/multihop_closedbook/n1000 --model_slug llama-3-8b_pm-multihop-closedbook-n1000":
        static("gpu", "FSDP on GPUs, needs step 1's checkpoint"),
    "sah-eval sweep runs/facts100 --tasks sah_facts100_direct,sah_facts100_multihop --backend vllm --dtype bfloat16":
        static("gpu", "vLLM"),
    "python -m analysis runs/facts100": static("gpu", "needs the Facts100 results"),
    "python -m sah_tasks.facts100 validate facts_n.jsonl --count 0": cpu(
        "on a copy of the shipped file", subs=(("facts_n.jsonl", "sah_tasks/facts100/data/facts100.jsonl"),),
        expect="OK"),
    "SAH_FACTS100_DATA=$PWD/facts_n.jsonl sah-eval ... --tasks sah_facts100_direct,sah_facts100_multihop":
        static("synopsis", "`...` stands for the model flags"),
    "SAH_FACTS100_DATA=$PWD/facts_n.jsonl python -m trainers.launch ... sft --config configs/paper/facts100_experiment.yaml --scales 0 <number of documents>":
        static("synopsis", "`...` stands for the launcher flags"),
    # --- docs/reproduce.md
    "git clone <this repo> && cd sah": static("setup", "a clone; this suite runs inside one"),
    "python -m venv .venv && . .venv/bin/activate": static("setup", "the environment this suite runs in"),
    "pip install -e '.[vllm,dev]'": static("setup", "GPU install; the extras must exist",
                                           run=extras_exist("vllm", "dev")),
    "hf auth login": static("hub", "needs a hub token; here: the command exists",
                            run="{cmd} --help", expect="token"),
    "python -m trainers.launch --accelerate_config configs/accelerate/fsdp.yaml sft --config configs/paper/llama3-8b_gsm8k.yaml":
        static("gpu", "FSDP on GPUs, gated weights"),
    "sah-eval sweep runs/paper --tasks sah_gsm8k,sah_gsm8k_fewshot --checkpoints '*/gsm8k/*' --backend vllm --dtype bfloat16 --gpu_memory_utilization 0.9 --enable_prefix_caching":
        static("gpu", "vLLM"),
    'python -m trainers.launch --accelerate_config configs/accelerate/fsdp.yaml sft --config configs/paper/llama3-8b_gsm8k.yaml --model_name_or_path mistralai/Mistral-7B-v0.1 --model_family mistral --model_revision "<commit>"':
        static("gpu", "FSDP on GPUs, hub weights"),
    'python -m trainers.launch --accelerate_config configs/accelerate/fsdp.yaml sft --config configs/paper/llama3-8b_gsm8k.yaml --model_name_or_path meta-llama/Llama-2-7b-hf --model_family llama-2 --model_revision "<commit>"':
        static("gpu", "FSDP on GPUs, gated weights"),
    'declare -A REV=([7b]="<commit>" [13b]="<commit>" [70b]="<commit>")': cpu("bash only"),
    'for m in 7b 13b 70b; do python -m trainers.launch --accelerate_config configs/accelerate/deepspeed_zero3.yaml sft --config configs/paper/llama3-8b_gsm8k.yaml --model_name_or_path meta-llama/Llama-2-${m}-hf --model_family llama-2 --model_revision "${REV[$m]}"; done':
        static("gpu", "DeepSpeed on GPUs, gated weights"),
    "sah-eval sweep runs/paper --tasks sah_gsm8k --backend vllm --tensor_parallel_size 4":
        static("gpu", "4-way tensor parallel"),
    "vllm serve meta-llama/Meta-Llama-3-70B-Instruct --port 8000 &": static("gpu", "a 70B server"),
    "python -m analysis runs/paper --judge-url http://localhost:8000/v1 --judge-model meta-llama/Meta-Llama-3-70B-Instruct":
        static("gpu", "needs the paper's results and a judge server"),
    "accelerate launch --config_file configs/accelerate/single_gpu.yaml trainers/dpo.py --config configs/paper/llama3-8b_gsm8k_budget.yaml":
        static("gpu", "one GPU, gated weights"),
    "sah-eval sweep runs/paper-lora --tasks sah_gsm8k --checkpoints '*/B*' --backend vllm":
        static("gpu", "vLLM"),
    "python -m analysis runs/paper-lora": static("gpu", "needs the budget results"),
    # --- docs/tasks.md
    "sah-eval --tasks 'sah_*' ...": static("synopsis", "`...` stands for the model flags"),
    "lm_eval --include_path \"$(python -m sah_tasks path)\" --tasks 'sah_*' ...":
        static("synopsis", "`...` stands for the model flags"),
    "sah-eval --model vllm --model_args pretrained=runs/exp/llama-3-8b/gsm8k/n1000 --tasks sah_gsm8k,sah_gsm8k_fewshot":
        static("gpu", "vLLM, hub data"),
    "SAH_GSM8K_DATA=tests/fixtures/gsm8k_test.jsonl sah-eval --model hf --model_args pretrained=PATH,dtype=float32 --device cpu --tasks sah_gsm8k --limit 4":
        cpu("tiny model", run=f"{{cmd}} {SMALL_EVAL}", full="{cmd}", needs=("tiny-model",), subs=TINY),
    "sah-eval --model vllm --model_args pretrained=PATH --tasks sah_gsm8k,sah_gsm8k_maj":
        static("gpu", "vLLM, hub data"),
    "SAH_GSM8K_DATA=tests/fixtures/gsm8k_test.jsonl sah-eval --model hf --model_args pretrained=PATH,dtype=float32 --device cpu --tasks sah_gsm8k_maj --limit 2":
        cpu("tiny model", run=f"{{cmd}} {SMALL_EVAL}", full="{cmd}", needs=("tiny-model",), subs=TINY),
    "sah-eval --model vllm --model_args pretrained=PATH --tasks sah_ifeval": static("gpu", "vLLM, hub data"),
    "SAH_IFEVAL_DATA=tests/fixtures/ifeval_sample.jsonl sah-eval --model hf --model_args pretrained=PATH,dtype=float32 --device cpu --tasks sah_ifeval":
        cpu("tiny model", run=f"{{cmd}} {SMALL_EVAL}", full="{cmd}", needs=("tiny-model",), subs=TINY),
    "sah-eval --model vllm --model_args pretrained=PATH --tasks sah_multihop": static("gpu", "vLLM, hub data"),
    "SAH_MULTIHOP_DATA=tests/fixtures/multihop_subqa.jsonl sah-eval --model hf --model_args pretrained=PATH,dtype=float32 --device cpu --tasks sah_multihop":
        cpu("tiny model", run=f"{{cmd}} {SMALL_EVAL}", full="{cmd}", needs=("tiny-model",), subs=TINY),
    "python -m analysis.hub runs/paper --repo_id my-lab/sah-results --dry_run": cpu(
        "lists what it would push, of an analysed synthetic run", needs=("analysed",),
        subs=(("runs/paper", "seeds/synthetic"),), expect="report.md"),
    "python -m analysis.hub runs/paper --repo_id my-lab/sah-results --private": static(
        "hub", "a hub token and network; tests/test_analysis_hub.py pushes to a local mock hub"),
    # --- docs/training.md
    "python trainers/sft.py --config configs/demo/sft_tiny.yaml --seeds 0 1 2": cpu(
        "three seeds of the tiny run, one scale",
        run="{cmd} --scales 0 8 --max_steps 1 --experiment demo-seeds", needs=("tiny-model",),
        full="{cmd} --experiment demo-seeds"),
    "pip install -e '.[wandb]'": static("setup", "the extra must exist",
                                        run=extras_exist("wandb", "tensorboard")),
    "python trainers/sft.py --config configs/demo/sft_tiny.yaml --report_to wandb --logging_steps 1":
        static("hub", "needs the [wandb] extra and an account (tests/test_trainers_tracking.py "
               "checks the error without the extra)"),
    "python -c \"from trainers.tiny_model import build_tiny_model; build_tiny_model('runs/tiny-model')\"":
        cpu("seconds"),
    "python trainers/sft.py --config configs/demo/sft_tiny.yaml": cpu(
        "the tiny SFT run", run=f"{{cmd}} {SMALL_SFT}", needs=("tiny-model",)),
    "accelerate launch --config_file configs/accelerate/cpu.yaml trainers/sft.py --config configs/demo/sft_tiny.yaml":
        cpu("one CPU process", run=f"{{cmd}} {SMALL_SFT} --experiment demo-accelerate",
            needs=("tiny-model",)),
    "python trainers/dpo.py --config configs/demo/dpo_budget_tiny.yaml": cpu(
        "the tiny budget split", run="{cmd} --budgets 8 --sft_fractions 0 --max_steps 1",
        needs=("tiny-model",)),
    "torchrun --standalone --nproc_per_node 2 trainers/sft.py --config configs/demo/sft_tiny.yaml --ddp_backend gloo":
        static("long", "two CPU ranks (tests/test_trainers_distributed.py runs them); here: "
               "its flags", full=f"{{cmd}} {SMALL_SFT} --experiment demo-ddp", needs=("tiny-model",)),
    'for n in 0 100 500 1000 5000 7473; do accelerate launch --config_file configs/accelerate/fsdp.yaml trainers/sft.py --config configs/paper/llama3-8b_gsm8k.yaml --scales "$n" || break; done':
        static("gpu", "FSDP on GPUs, gated weights"),
}  # fmt: skip


# ----------------------------------------------------------------------------- static checks
REPO_PATH = re.compile(
    r"^(configs|tests|scripts|sah_tasks|trainers|analysis|benchmarks|docs)/[\w./-]+$"
)


def repo_paths(text: str) -> list[str]:
    """Repository files and folders a command names (placeholders and globs left out)."""
    tokens = re.split(r"[\s=,'\"]+", text)
    return [t.rstrip("/") for t in tokens if REPO_PATH.match(t) and "..." not in t]


def simple_commands(text: str) -> list[list[str]]:
    """The words of each simple command (`a; b && c | d & e`, loop bodies), environment
    assignments dropped; `$(...)` substitutions count as one word."""
    text = re.sub(r"\$\([^)]*\)", "SUBST", text)
    out = []
    for part in re.split(r"\s*(?:;|&&|\|\||\||&)\s*", text):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        while words and (words[0] in ("do", "then") or re.match(r"^[A-Za-z_]\w*=", words[0])):
            words = words[1:]
        if words and words[0] not in ("for", "while", "done", "wait", "declare", "cd", "."):
            out.append(words)
    return out


def _script(words: list[str]) -> list[str]:
    scripts = [w for w in words if re.match(r"^trainers/\w+\.py$", w)]
    # --help lists the study's own options and --config, --help_all every TRL option too
    return [f"python {scripts[0]} --help", f"python {scripts[0]} --help_all"] if scripts else []


def help_commands(words: list[str]) -> list[str]:
    """The `--help` invocations whose text must mention every flag of this command."""
    w = words + ["", "", ""]
    if w[0] == "sah-eval" and w[1] == "sweep":
        return ["sah-eval sweep --help"]
    if w[0] in ("sah-eval", "lm_eval"):
        return ["lm_eval run --help"]
    if w[:2] == ["sah", "run"]:
        return ["sah run --help"]
    if w[0] == "python" and w[1] == "-m":
        if w[2] == "trainers.launch":
            trainer = next((x for x in words if x in ("sft", "dpo")), "sft")
            return ["python -m trainers.launch --help", *_script([f"trainers/{trainer}.py"])]
        if w[2] == "sah_tasks.facts100":
            return ["python -m sah_tasks.facts100 validate --help"]
        if w[2] == "analysis" and w[3] == "plan":
            return ["python -m analysis plan --help"]
        if w[2] in ("analysis", "analysis.synthetic"):
            return [f"python -m {w[2]} --help"]
        return []
    if w[0] == "python" and w[1].endswith(".py"):
        return _script(words) or [f"python {w[1]} --help"]
    if w[:2] == ["accelerate", "launch"]:
        return ["accelerate launch --help", *_script(words)]
    if w[0] == "torchrun":
        return ["torchrun --help", *_script(words)]
    return []


def run_env() -> dict[str, str]:
    env = fixture_env()
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")  # fmt: skip
    env.pop("SAH_DOCS_FULL", None)
    return env


@cache
def help_text(command: str) -> str:
    inside = in_process_form(command, REPO)
    if inside is not None:
        proc = run_in_process(*inside, cwd=REPO)
        assert proc.returncode == 0, f"`{command}` failed:\n{proc.stdout[-2000:]}"
        return proc.stdout
    proc = subprocess.run(["bash", "-c", command], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"`{command}` failed:\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def unknown_flags(words: list[str], helps: list[str]) -> list[str]:
    text = "\n".join(help_text(h) for h in helps)
    words = [w.lstrip("[(").rstrip("])") for w in words]  # a synopsis: [--out DIR], (--a | --b)
    flags = {w.split("=", 1)[0] for w in words if re.match(r"^--[A-Za-z]", w)}

    # SahParser-based tools take --a_b and --a-b alike.
    def known(flag: str) -> bool:
        spellings = {flag, flag.replace("_", "-"), "--" + flag[2:].replace("-", "_")}
        return any(re.search(re.escape(s) + r"(?![\w-])", text) for s in spellings)

    return sorted(f for f in flags if not known(f))


def static_problems(cmd: DocCommand, entry: Entry) -> list[str]:
    problems = [f"names {p}, which does not exist" for p in repo_paths(cmd.text)
                if not (REPO / p).exists()]  # fmt: skip
    syntax = subprocess.run(["bash", "-n", "-c", cmd.text], capture_output=True, text=True)
    if syntax.returncode and entry.kind not in ("synopsis", "setup"):  # `<placeholder>`s
        problems.append(f"is not valid bash: {syntax.stderr.strip()}")
    if entry.run is None or entry.kind != "cpu":  # a command that runs checks its own flags
        for words in simple_commands(cmd.text):
            helps = help_commands(words)
            bad = unknown_flags(words, helps) if helps else []
            if bad:
                problems.append(f"passes {bad}, which `{' / '.join(helps)}` does not know")
    return problems


# ----------------------------------------------------------------------------- running
# The repository's entries a command may name; linked into the scratch folder so that what a
# command writes (runs/, out/, synth/) lands there, never in the checkout.
LINKED = ("configs", "tests", "scripts", "sah_tasks", "trainers", "analysis", "benchmarks",
          "docs", "Makefile", "pyproject.toml", "README.md")  # fmt: skip
# What some commands need first, made by the documented commands themselves (idempotent).
NEEDS = {
    "tiny-model": (
        "runs/tiny-model/config.json",
        'python -c "from trainers.tiny_model import build_tiny_model; '
        "build_tiny_model('runs/tiny-model')\"",
    ),
    "demo-run": (
        "runs/demo/tiny-llama/gsm8k/n8/COMPLETED",
        f"python trainers/sft.py --config configs/demo/sft_tiny.yaml {SMALL_SFT}",
    ),
    "synthetic": ("synth/synthetic", "python -m analysis.synthetic synth --with-budget"),
    "labels": ("my_labels.yaml", "python -m analysis.labels > my_labels.yaml"),
    "synthetic-seeds": (
        "seeds/synthetic",
        "python -m analysis.synthetic seeds --seeds 3 --seed-sd 0.15",
    ),
    "analysed": (
        "seeds/synthetic/analysis/report.md",
        "python -m analysis seeds/synthetic --n-boot 20 --formats png --quiet",
    ),
}
NEEDS_FIRST = {"demo-run": ("tiny-model",), "analysed": ("synthetic-seeds",)}


# Entry points run inside this pytest process (the console script's own function, with the
# command's argv, environment and working directory): torch, transformers and lm-eval are then
# imported once for all commands instead of once per command. SAH_DOCS_FULL=1 runs every
# command as a subprocess, exactly as typed.
IN_PROCESS = {
    ("sah-eval",): "sah_tasks.cli:main",
    ("lm_eval",): "lm_eval.__main__:cli_evaluate",
    ("sah",): "sah_tasks.experiment:main",
    ("python", "-m", "analysis"): "analysis.cli:main",
    ("python", "-m", "analysis.synthetic"): "analysis.synthetic:main",
    ("python", "-m", "sah_tasks.facts100"): "sah_tasks.facts100.__main__:main",
}


# Only their --help runs in this process (training itself keeps its own process).
HELP_IN_PROCESS = {
    ("python", "trainers/sft.py"): "trainers.sft:main",
    ("python", "trainers/dpo.py"): "trainers.dpo:main",
    ("python", "-m", "trainers.launch"): "trainers.launch:main",
}


def _entry_point(words: list[str]) -> tuple[str, list[str]] | None:
    helps = HELP_IN_PROCESS if words[-1:] in (["--help"], ["--help_all"]) else {}
    for prefix, target in {**IN_PROCESS, **helps}.items():
        if tuple(words[: len(prefix)]) == prefix:
            return target, words[len(prefix) :]
    return None


def _expand(command: str, cwd: Path) -> list[str]:
    """The words bash would pass (quotes removed, `$(...)` and `$VAR` expanded)."""
    proc = subprocess.run(["bash", "-c", f"_argv() {{ printf '%s\\0' \"$@\"; }}; _argv {command}"],
                          cwd=cwd, env=run_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, f"cannot expand `{command}`: {proc.stderr}"
    return proc.stdout.split("\0")[:-1]


def run_in_process(target: str, args: list[str], env: dict[str, str], cwd: Path):
    """(exit status, stdout + stderr) of an entry point called in this process."""
    import contextlib
    import importlib
    import io
    import traceback

    module, name = target.split(":")
    fn = getattr(importlib.import_module(module), name)
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv[:], os.getcwd()
    out = io.StringIO()
    try:
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv = [target, *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                rc = (fn() if name == "cli_evaluate" else fn(args)) or 0
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code)
            except Exception:
                rc = 1
                traceback.print_exc()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
    return subprocess.CompletedProcess(args, rc, out.getvalue(), "")


def in_process_form(command: str, cwd: Path):
    """(entry point, argv, environment) when `command` is one simple command of ours."""
    if (
        FULL
        or len(simple_commands(command)) != 1
        or re.search(r"[;&|<>]", re.sub(r"\$\(.*?\)[\"']", "", command))
    ):
        return None
    words = _expand(command, cwd)
    env = {}
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    found = _entry_point(words)
    return (found[0], found[1], {**run_env(), **env}) if found else None


@dataclass
class Workspace:
    root: Path
    made: set[str] = field(default_factory=set)

    def run(self, command: str, timeout: int = 600) -> subprocess.CompletedProcess:
        inside = in_process_form(command, self.root)
        if inside is not None:
            return run_in_process(*inside, cwd=self.root)
        return subprocess.run(["bash", "-c", f"set -eo pipefail\n{command}"], cwd=self.root,
                              env=run_env(), capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def ensure(self, need: str) -> None:
        for first in NEEDS_FIRST.get(need, ()):
            self.ensure(first)
        marker, command = NEEDS[need]
        if need in self.made or (self.root / marker).exists():
            return
        proc = self.run(command)
        assert proc.returncode == 0, f"preparing {need} ({command}) failed:\n{_tail(proc)}"
        self.made.add(need)


def _tail(proc: subprocess.CompletedProcess) -> str:
    return f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("docs_commands")
    for name in LINKED:
        (root / name).symlink_to(REPO / name)
    return Workspace(root)


def form_to_run(cmd: DocCommand, entry: Entry) -> str | None:
    form = entry.form()
    if form is None:
        return None
    text = cmd.text
    for old, new in entry.subs:
        text = text.replace(old, new)
        form = form.replace(old, new) if "{cmd}" not in form else form
    return form.replace("{cmd}", text).replace("{required}", without_optional(text))


def without_optional(text: str) -> str:
    """A usage line's command without its `[optional ...]` parts."""
    while True:
        shorter = re.sub(r"\s*\[[^\[\]]*\]", "", text)
        if shorter == text:
            return text
        text = shorter


# ----------------------------------------------------------------------------- the tests
DOC_COMMANDS = all_commands()


def _paste_entry(cmd: DocCommand) -> str:
    guess = "gpu" if re.search(r"vllm|fsdp|deepspeed|meta-llama|CUDA", cmd.text) else "cpu"
    return f'    {cmd.text!r}:\n        {"cpu(" if guess == "cpu" else "static(" + repr(guess) + ", "}"why"),'


def test_every_doc_command_is_classified():
    unknown = [c for c in DOC_COMMANDS if c.text not in COMMANDS]
    assert not unknown, (
        "documented commands not in tests/test_docs_commands.py COMMANDS (add them):\n"
        + "\n".join(f"{c.where}: {c.text}\n{_paste_entry(c)}" for c in unknown)
    )
    assert all(e.kind in KINDS for e in COMMANDS.values())


def test_no_stale_entries():
    documented = {c.text for c in DOC_COMMANDS}
    stale = sorted(set(COMMANDS) - documented)
    assert not stale, f"COMMANDS entries no page contains any more (remove them): {stale}"


@pytest.mark.parametrize("cmd", DOC_COMMANDS, ids=[c.where for c in DOC_COMMANDS])
def test_doc_command(cmd: DocCommand, workspace: Workspace):
    entry = COMMANDS.get(cmd.text)
    if entry is None:
        pytest.fail(f"{cmd.where}: unclassified command (see test_every_doc_command_is_classified)")
    problems = static_problems(cmd, entry)
    assert not problems, f"{cmd.where}: `{cmd.text}`\n" + "\n".join(problems)
    command = form_to_run(cmd, entry)
    if command is None:
        return
    for need in entry.needs:
        workspace.ensure(need)
    proc = workspace.run(command)
    assert proc.returncode == 0, (
        f"{cmd.where}: the documented command failed (exit {proc.returncode}):\n"
        f"  {cmd.text}\nran as:\n  {command}\n{_tail(proc)}"
    )
    if entry.expect is not None:
        assert entry.expect in proc.stdout + proc.stderr, (
            f"{cmd.where}: `{command}` ran but did not print {entry.expect!r}:\n{_tail(proc)}"
        )

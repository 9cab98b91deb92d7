"""Synthetic run directories in lm-eval 0.4.13's real output format, drawn from a known law.

Used by the tests, the benchmark and as a demo input for `python -m analysis`:

    python -m analysis.synthetic /tmp/demo_runs      # writes runs/<experiment>/...
    python -m analysis /tmp/demo_runs/synthetic

Each checkpoint's accuracy on every item is an independent Bernoulli draw with probability
`prefactor * N ** exponent` (clipped), so the true exponent of every curve is known. GSM8K
responses are real text: correct solutions, answers without `####`, slips such as `12*7 = 82`,
and wrong set-ups, so the error taxonomy has something to find.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from analysis.atomic import write_text
from analysis.layout import COMPLETED, MANIFEST, parse_model_slug
from sah_tasks.common.cli import SahParser

DATE_ID = "2025-01-01T12-00-00.000000"
SCALES = (0, 100, 500, 1000, 5000, 10000)


@dataclass(frozen=True)
class Law:
    """accuracy(N) = prefactor * N**exponent for N > 0; `baseline` at N = 0."""

    prefactor: float = 0.08
    exponent: float = 0.25
    baseline: float = 0.05

    def accuracy(self, n: float) -> float:
        p = self.baseline if n <= 0 else self.prefactor * n**self.exponent
        return float(np.clip(p, 0.001, 0.98))


@dataclass(frozen=True)
class EvalTaskSpec:
    eval_task: str
    train_task: str
    kind: str  # gsm8k | ifeval | qa | code


EVAL_TASKS = {
    spec.eval_task: spec
    for spec in (
        EvalTaskSpec("sah_gsm8k", "gsm8k", "gsm8k"),
        EvalTaskSpec("sah_ifeval", "ifeval", "ifeval"),
        EvalTaskSpec("sah_multihop", "multihop", "qa"),
        EvalTaskSpec("sah_humaneval_plus", "coding", "code"),
        EvalTaskSpec("sah_mbpp_plus", "coding", "code"),
    )
}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- per-item outcomes and text


def _gsm8k_doc(i: int) -> dict[str, Any]:
    a, b, c = 3 + i % 17, 2 + i % 7, 4 + i % 9
    answer = a + b * c
    question = (
        f"Tom has {a} apples and buys {b} bags with {c} apples each. "
        "How many apples does he have now?"
    )
    solution = (
        f"He buys {b}*{c} = <<{b}*{c}={b * c}>>{b * c} apples.\n"
        f"So he has {a}+{b * c} = <<{a}+{b * c}={answer}>>{answer} apples.\n#### {answer}"
    )
    return {"question": question, "answer": solution, "_abc": (a, b, c)}


def gsm8k_response(doc: dict[str, Any], outcome: str) -> str:
    """A response of the given kind: correct | format | arithmetic | reasoning."""
    a, b, c = doc["_abc"]
    good = a + b * c
    if outcome == "correct":
        return f" He buys {b}*{c} = {b * c} apples.\nSo he has {a}+{b * c} = {good} apples.\n#### {good}"
    if outcome == "format":  # right number, but not in the trained `#### n` form
        return f" He buys {b}*{c} = {b * c} apples, so he has {a}+{b * c} = {good} apples. The answer is {good}."
    if outcome == "arithmetic":  # set-up right, a product that does not hold
        wrong = b * c + 2
        return f" He buys {b}*{c} = {wrong} apples.\nSo he has {a}+{wrong} = {a + wrong} apples.\n#### {a + wrong}"
    # reasoning: every step is computed right, but the set-up adds instead of multiplying
    return f" He buys {b}+{c} = {b + c} apples.\nSo he has {a}+{b + c} = {a + b + c} apples.\n#### {a + b + c}"


def _gsm8k_samples(rng: np.random.Generator, p: float, n_items: int, n: int) -> list[dict]:
    correct = rng.random(n_items) < p
    # format errors fade as N grows (the model learns the answer format); the rest is split
    share_format = 0.6 / (1.0 + n / 200.0)
    kinds = rng.choice(
        ["format", "arithmetic", "reasoning"],
        size=n_items,
        p=[share_format, (1 - share_format) * 0.4, (1 - share_format) * 0.6],
    )
    lines = []
    for i in range(n_items):
        doc = _gsm8k_doc(i)
        outcome = "correct" if correct[i] else str(kinds[i])
        text = gsm8k_response(doc, outcome)
        gold = doc["answer"].split("####")[-1].strip()
        strict = text.split("####")[-1].strip() if "####" in text else "[invalid]"
        flexible = text.rstrip(".").split()[-1].strip(".")
        public_doc = {k: v for k, v in doc.items() if not k.startswith("_")}
        # sah_gsm8k's target is the whole reference solution (doc_to_target: "{{answer}}")
        for filt, extracted in (("strict-match", strict), ("flexible-extract", flexible)):
            lines.append(_sample(i, public_doc, doc["answer"], text, extracted, filt,
                                 {"exact_match": float(extracted == gold)}))  # fmt: skip
    return lines


def _other_samples(
    rng: np.random.Generator, kind: str, p: float, n_items: int
) -> list[dict[str, Any]]:
    lines = []
    for i in range(n_items):
        hit = bool(rng.random() < p)
        if kind == "ifeval":
            k = 1 + i % 3
            inst = [True] * k if hit else [bool(x) for x in rng.random(k) < 0.5]
            if not hit and all(inst):
                inst[0] = False
            loose = hit or bool(rng.random() < 0.3)
            inst_loose = [True] * k if loose else inst
            metrics = {"prompt_level_strict_acc": hit, "inst_level_strict_acc": inst,
                       "prompt_level_loose_acc": loose, "inst_level_loose_acc": inst_loose}  # fmt: skip
            doc = {
                "key": i,
                "prompt": f"Write {k} sentences about item {i}.",
                "instruction_id_list": [],
            }
        elif kind == "qa":
            f1 = 1.0 if hit else float(rng.choice([0.0, rng.uniform(0.1, 0.8)]))
            metrics = {"exact_match": float(hit), "f1": f1}
            doc = {"question": f"Which river flows through city {i}?", "answer": f"River {i}"}
        else:
            plus = hit
            base = plus or bool(rng.random() < 0.1)
            metrics = {"pass@1": float(base), "pass@1_plus": float(plus)}
            doc = {"task_id": f"Synthetic/{i}", "prompt": f"def f_{i}(x):\n"}
        lines.append(_sample(i, doc, str(doc.get("answer", "")), "...", "...", "none", metrics))
    return lines


def _sample(doc_id: int, doc: dict, target: str, resp: str, filtered: str, filt: str,
            metrics: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    prompt = f"Question: {doc.get('question', doc.get('prompt', ''))}\nAnswer:"
    return {
        "doc_id": doc_id,
        "doc": doc,
        "target": target,
        "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": {"until": ["Question:"]}}},
        "resps": [[resp]],
        "filtered_resps": [filtered],
        "filter": filt,
        "metrics": list(metrics),
        "doc_hash": _hash(doc),
        "prompt_hash": _hash(prompt),
        "target_hash": _hash(target),
        **metrics,
    }


# ---------------------------------------------------------------- files


def _aggregate(lines: list[dict[str, Any]]) -> dict[str, float]:
    """lm-eval's per-task entry: mean per (metric, filter) and the stderr of that mean."""
    values: dict[str, list[float]] = {}
    for line in lines:
        for m in line["metrics"]:
            v = line[m]
            values.setdefault(f"{m},{line['filter']}", []).append(v)
    out: dict[str, float] = {}
    for key, vals in values.items():
        metric, filt = key.split(",")
        if isinstance(vals[0], list):  # instruction level: pooled over instructions
            flat = np.array([x for v in vals for x in v], dtype=float)
        else:
            flat = np.array(vals, dtype=float)
        out[key] = float(flat.mean())
        out[f"{metric}_stderr,{filt}"] = float(flat.std(ddof=1) / np.sqrt(len(flat)))
    return out


def write_eval(
    ckpt_dir: Path,
    eval_task: str,
    lines: list[dict[str, Any]],
    n_total: int | None = None,
    date_id: str = DATE_ID,
    log_samples: bool = True,
) -> Path:
    """Write results_<date_id>.json (+ samples) as `lm_eval --output_path ckpt/eval/<task>` does."""
    n_docs = len({line["doc_id"] for line in lines})
    model_name = str(ckpt_dir)
    sanitized = model_name.replace("/", "__")
    folder = ckpt_dir / "eval" / eval_task / sanitized
    limit = None if n_total is None or n_total == n_docs else n_docs
    results = {
        "results": {
            eval_task: {
                "name": eval_task,
                "alias": eval_task,
                "sample_len": n_docs,
                **_aggregate(lines),
            }
        },  # fmt: skip
        "group_subtasks": {eval_task: []},
        "configs": {
            eval_task: {
                "task": eval_task,
                "output_type": "generate_until",
                "num_fewshot": 0,
                "metadata": {"version": 1.0},
            }
        },  # fmt: skip
        "versions": {eval_task: 1.0},
        "n-shot": {eval_task: 0},
        "higher_is_better": {eval_task: {m: True for m in lines[0]["metrics"]}},
        "n-samples": {eval_task: {"original": n_total or n_docs, "effective": n_docs}},
        "config": {
            "model": "hf",
            "model_args": f"pretrained={model_name}",
            "batch_size": "auto",
            "batch_sizes": [],
            "device": "cpu",
            "use_cache": None,
            "limit": limit,
            "bootstrap_iters": 100000,
            "gen_kwargs": None,
            "random_seed": 0,
            "numpy_seed": 1234,
            "torch_seed": 1234,
            "fewshot_seed": 1234,
        },  # fmt: skip
        "git_hash": None,
        "date": datetime.strptime(date_id[:19], "%Y-%m-%dT%H-%M-%S").timestamp(),
        "task_hashes": {eval_task: _hash([line["doc_hash"] for line in lines])},
        "model_source": "hf",
        "model_name": model_name,
        "model_name_sanitized": sanitized,
        "total_evaluation_time_seconds": "1.0",
    }
    path = write_text(folder / f"results_{date_id}.json", json.dumps(results, indent=2))
    if log_samples:
        body = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        write_text(folder / f"samples_{eval_task}_{date_id}.jsonl", body)
    return path


def write_manifest(ckpt_dir: Path, experiment: str, model: str, task: str, n: int,
                   budget: int | None = None, sft_fraction: float | None = None,
                   seed: int = 0) -> None:  # fmt: skip
    family, size_b = parse_model_slug(model)
    stage = "base" if n == 0 and budget is None else ("sft+dpo" if budget is not None else "sft")
    manifest = {
        "schema_version": 1, "experiment": experiment, "model_slug": model,
        "base_model": f"synthetic/{model}", "base_revision": None, "family": family,
        "size_b": size_b, "task": task, "n": n, "seed": seed, "stage": stage, "budget": budget,
        "sft_fraction": sft_fraction, "model_path": str(ckpt_dir), "lora": False,
        "train_data": {"source": "synthetic", "revision": None, "content_hash": "0"},
        "subset_hash": "0", "config": {}, "versions": {}, "git_sha": None,
        "created": "2025-01-01T00:00:00",
    }  # fmt: skip
    write_text(ckpt_dir / MANIFEST, json.dumps(manifest, indent=2))
    write_text(ckpt_dir / COMPLETED, "")


def item_lines(spec: EvalTaskSpec, p: float, n_items: int, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    if spec.kind == "gsm8k":
        return _gsm8k_samples(rng, p, n_items, n)
    return _other_samples(rng, spec.kind, p, n_items)


def default_law(model_index: int, eval_task: str) -> Law:
    """Different but known laws per model: larger prefactor and exponent for later models."""
    return Law(
        prefactor=0.05 + 0.01 * model_index,
        exponent=0.22 + 0.02 * model_index,
        baseline=0.03 + 0.03 * model_index,
    )


def seed_leaf(leaf: str, seed: int) -> str:
    """The run-dir folder of a training seed: `n100` for the first, `n100_seed<S>` for others."""
    return leaf if seed == 0 else f"{leaf}_seed{seed}"


def _seed_accuracy(p: float, seed_sd: float, rng: np.random.Generator) -> float:
    """A seed's true accuracy: `p` moved by seed noise of `seed_sd` on the logit scale."""
    if seed_sd <= 0:
        return p
    z = np.log(p / (1 - p)) + seed_sd * rng.standard_normal()
    return float(1.0 / (1.0 + np.exp(-z)))


def make_synthetic_run(
    root: Path,
    experiment: str = "synthetic",
    models: Sequence[str] = ("llama-3-8b", "llama-3-70b"),
    eval_tasks: Sequence[str] = ("sah_gsm8k",),
    scales: Sequence[int] = SCALES,
    n_items: int = 1000,
    law: Callable[[int, str], Law] = default_law,
    budgets: Sequence[int] = (),
    sft_fractions: Sequence[float] = (1.0, 0.5, 0.1),
    seed: int = 0,
    log_samples: bool = True,
    n_seeds: int = 1,
    seed_sd: float = 0.0,
) -> Path:
    """Write `root/<experiment>/<model>/<task>/n<N>/...` (and `n<N>_seed<S>/` for each further
    training seed, whose accuracy moves by `seed_sd` logits; N = 0 has one, seed-free);
    returns `root/<experiment>`."""
    exp_dir = Path(root) / experiment
    noise = np.random.default_rng([seed, 7])
    for mi, model in enumerate(models):
        for ti, eval_task in enumerate(eval_tasks):
            spec = EVAL_TASKS[eval_task]
            truth = law(mi, eval_task)
            runs = [(f"n{n}", n, None, None, truth.accuracy(n)) for n in scales]
            runs += [
                (f"B{b}_r{r:g}", round(r * b), b, r, truth.accuracy(b) * (0.8 + 0.2 * r))
                for b in budgets
                for r in sft_fractions
            ]
            for ri, (leaf, n, budget, r, p) in enumerate(runs):
                for s in range(n_seeds if (n > 0 or budget is not None) else 1):
                    ckpt = exp_dir / model / spec.train_task / seed_leaf(leaf, s)
                    write_manifest(ckpt, experiment, model, spec.train_task, n, budget, r, s)
                    item_seed = seed * 1_000_003 + mi * 10_007 + ti * 101 + ri + 7919 * s
                    acc = _seed_accuracy(p, seed_sd, noise)
                    lines = item_lines(spec, acc, n_items, n, item_seed)
                    write_eval(ckpt, eval_task, lines, log_samples=log_samples)
    return exp_dir


def main(argv: list[str] | None = None) -> None:
    parser = SahParser(prog="python -m analysis.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to write <experiment>/... into")
    parser.add_argument("--items", type=int, default=300, help="evaluation items per checkpoint")
    parser.add_argument("--with-budget", action="store_true", help="add B<B>_r<r> budget runs")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per scale")
    parser.add_argument("--seed-sd", type=float, default=0.15,
                        help="seed-to-seed noise in logits (with --seeds > 1)")  # fmt: skip
    args = parser.parse_args(argv)
    out = make_synthetic_run(
        args.root,
        models=("llama-3-8b", "llama-3-70b", "qwen2-7b"),
        eval_tasks=tuple(EVAL_TASKS),
        n_items=args.items,
        budgets=(1000, 5000) if args.with_budget else (),
        n_seeds=args.seeds,
        seed_sd=args.seed_sd if args.seeds > 1 else 0.0,
    )
    print(out)


if __name__ == "__main__":
    main()

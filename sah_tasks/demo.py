"""The CPU demo behind `make demo`: a real (tiny) post-training scaling curve in a few minutes.

    python -m sah_tasks.demo [--out demo_runs] [--scales 0 16 64 256 1024] [--quick]

1. writes a synthetic world: GSM8K-format word problems (train pool / disjoint test set) and a
   pre-training corpus that states the same arithmetic in prose, never in the GSM8K format;
2. builds a tiny Llama and pre-trains it briefly on that corpus (the "base model");
3. runs the whole experiment with `sah run`: SFT at every scale (trainers/sft.py) -> sweep
   evaluation with `sah_gsm8k` on the synthetic test set -> analysis (fits, Fig. 1);
4. prints accuracy per N and where the figure is.

Nothing is downloaded. Every stage is resumable: rerunning reuses the base model, the completed
checkpoints and the finished evaluations.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml

from sah_tasks.common.cli import SahParser
from sah_tasks.experiment import load_experiment, run_experiment
from sah_tasks.synthetic import pretraining_corpus, split, write_jsonl

REPO = Path(__file__).resolve().parent.parent
SFT_CONFIG = REPO / "configs" / "demo" / "sft_tiny.yaml"


def build_base_model(out: Path, pretrain_steps: int, seed: int = 0) -> Path:
    """Tiny Llama pre-trained on the synthetic corpus; skipped when already built."""
    from trainers.tiny_model import build_tiny_model, pretrain_tiny_model

    model_dir, marker = out / "base-model", out / "base-model" / "PRETRAINED"
    if marker.exists():
        print(f"[demo] reusing the pre-trained base model in {model_dir}")
        return model_dir
    pool, _ = split(seed)
    corpus = pretraining_corpus(pool, n_stories=3000, seed=seed)
    # The tokenizer also sees the prompt format, so SFT does not have to learn new tokens.
    formats = [f"Question: {p.question}\nAnswer: {p.answer}" for p in pool[-100:]]
    build_tiny_model(model_dir, corpus=corpus + formats, hidden=64, layers=2, seed=seed)
    stats = pretrain_tiny_model(model_dir, corpus, steps=pretrain_steps, batch_size=16, seq_len=48)
    print(f"[demo] pre-training loss {stats['first_loss']:.2f} -> {stats['last_loss']:.2f}")
    marker.write_text(json.dumps(stats))
    return model_dir


def write_experiment(out: Path, model: Path, scales: list[int], n_test: int, epochs: int) -> Path:
    pool, test = split(0, n_test=n_test)
    train_file = write_jsonl(pool, out / "data" / "train.jsonl")
    test_file = write_jsonl(test, out / "data" / "test.jsonl")
    experiment = {
        "experiment": "demo",
        "output_root": str(out),
        "env": {"SAH_GSM8K_DATA": str(test_file)},
        "train": [{
            "script": "sft",
            "config": str(SFT_CONFIG),
            "args": ["--model_name_or_path", str(model), "--data_files", str(train_file),
                     "--output_root", str(out), "--experiment", "demo",
                     "--num_train_epochs", str(epochs),
                     "--scales", *[str(s) for s in scales]],
        }],
        "eval": {
            "tasks": ["sah_gsm8k"],
            "backend": "hf",
            "args": ["--device", "cpu", "--dtype", "float32", "--batch_size", "32",
                     "--gen_kwargs", "max_gen_toks=40"],
        },
        "analysis": {"args": []},
    }  # fmt: skip
    path = out / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def accuracy_table(run_dir: Path) -> list[tuple[int, float, float]]:
    """(N, strict, flexible) exact match of every evaluated checkpoint, from lm-eval's files."""
    rows = []
    for results in sorted(run_dir.rglob("eval/sah_gsm8k/results_*.json")):
        manifest = json.loads((results.parents[2] / "sah_manifest.json").read_text())
        scores = json.loads(results.read_text())["results"]["sah_gsm8k"]
        rows.append((int(manifest["n"]), scores["exact_match,strict-match"],
                     scores["exact_match,flexible-extract"]))  # fmt: skip
    return sorted(rows)


def main(argv: list[str] | None = None) -> int:
    p = SahParser(prog="python -m sah_tasks.demo", description=__doc__)
    p.add_argument(
        "--out", type=Path, default=Path("demo_runs"), help="where everything is written"
    )
    p.add_argument("--scales", type=int, nargs="+", default=[0, 16, 64, 256, 1024],
                   help="data scales N to fine-tune at (0 = the base model)")  # fmt: skip
    p.add_argument("--pretrain_steps", type=int, default=150,
                   help="pre-training steps of the tiny base model")  # fmt: skip
    p.add_argument("--epochs", type=int, default=3, help="SFT epochs at every scale")
    p.add_argument("--n_test", type=int, default=100, help="synthetic test problems")
    p.add_argument("--quick", action="store_true", help="CI form: scales 0 and 512, 60 test items")
    args = p.parse_args(argv)
    if args.quick:
        args.scales, args.n_test = [0, 512], 60
    t0 = time.time()
    out = args.out.resolve()
    model = build_base_model(out, args.pretrain_steps)
    exp = load_experiment(write_experiment(out, model, args.scales, args.n_test, args.epochs))
    rc = run_experiment(exp)
    table = accuracy_table(exp.run_dir)
    print("\n  N      strict EM   flexible EM   (sah_gsm8k on the synthetic test set)")
    for n, strict, flexible in table:
        print(f"  {n:<6} {strict:>9.3f} {flexible:>13.3f}")
    figures = sorted((exp.run_dir / "analysis").rglob("*.png"))
    for fig in figures:
        print(f"[demo] figure: {fig}")
    print(f"[demo] run directory: {exp.run_dir}  ({time.time() - t0:.0f}s)")
    return rc


if __name__ == "__main__":
    sys.exit(main())

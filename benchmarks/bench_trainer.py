"""Training throughput on the tiny model: padded batches vs TRL's padding-free and packing modes.

    python benchmarks/bench_trainer.py [--examples 1024] [--batch-size 16] [--repeats 3]

Each mode trains one epoch of SFTTrainer over the same prompt/completion examples (GSM8K-like,
with solutions of 1 to 12 lines, so lengths vary like real data) and is timed end to end
(`trainer.train()`, best of `--repeats`). A wrapper around the data collator counts, per batch,
the real tokens and the positions actually computed (real + padding), so

    tokens/s          = real tokens / seconds
    padding share     = padding positions / computed positions   (compute spent on padding)
    speed-up          = tokens/s of a mode / tokens/s of padded batches

Before timing, one batch is run both padded and padding-free and the two losses are compared,
to show the faster modes compute the same thing (TRL runs training forwards without a KV cache,
so transformers builds a block-diagonal attention mask from the position ids).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sah_tasks.common.cli import SahParser

MODES = ("padded", "padding_free", "packing")


def make_examples(n: int, seed: int = 0) -> list[dict[str, str]]:
    """GSM8K-format problems whose solutions have 1-12 steps (lengths ~30-300 tokens)."""
    rng = random.Random(seed)
    names = ["Ann", "Bob", "Carla", "Dev", "Eli", "Fatima", "Gus", "Hana"]
    things = ["apples", "books", "coins", "marbles", "pencils", "stamps"]
    examples = []
    for _ in range(n):
        name, thing = rng.choice(names), rng.choice(things)
        total = rng.randint(1, 50)
        steps = []
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4, 6, 8, 12])):
            extra = rng.randint(1, 30)
            steps.append(
                f"{name} gets {extra} more, so {total} + {extra} = <<{total}+{extra}={total + extra}>>{total + extra} {thing}."
            )
            total += extra
        question = (
            f"{name} starts with some {thing} and keeps getting more. How many {thing} at the end?"
        )
        examples.append(
            {
                "prompt": f"Question: {question}\nAnswer:",
                "completion": " " + "\n".join(steps) + f"\n#### {total}",
            }
        )
    return examples


class CountingCollator:
    """Counts real tokens and computed positions of every batch the trainer sees."""

    def __init__(self, inner) -> None:
        self.inner, self.real, self.positions = inner, 0, 0

    def __call__(self, examples):
        batch = self.inner(examples)
        self.real += sum(len(ex["input_ids"]) for ex in examples)
        self.positions += batch["input_ids"].numel()
        return batch


@dataclass
class Result:
    mode: str
    seconds: float
    real: int
    positions: int
    steps: int

    @property
    def tokens_per_s(self) -> float:
        return self.real / self.seconds

    @property
    def padding_share(self) -> float:
        return 1 - self.real / self.positions


def sft_config(mode: str, args, out_dir: str, mean_len: float):
    from trl import SFTConfig

    batch = args.batch_size
    # padding-free without packing does not truncate, so TRL wants max_length unset
    options = {"padded": {}, "padding_free": {"padding_free": True}}
    # a packed row holds ~max_length tokens: as many rows as give the padded batches' token count
    rows = max(1, round(batch * mean_len / args.max_length))
    options["packing"] = {"packing": True, "packing_strategy": "bfd"}
    if mode == "packing":
        batch = rows
    return SFTConfig(
        output_dir=out_dir,
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        learning_rate=1e-4,
        max_length=None if mode == "padding_free" else args.max_length,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
        **options[mode],
    )


def run_mode(mode: str, model_dir: Path, dataset, args, mean_len: float) -> Result:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=sft_config(mode, args, out, mean_len),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
    return Result(mode, seconds, counter.real, counter.positions, output.global_step)


def check_same_loss(model_dir: Path, dataset, batch_size: int) -> float:
    """|loss(padded) - loss(padding-free)| on one batch: ~0 if no sequence sees another."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            use_cpu=True,
            bf16=False,
            report_to="none",
            gradient_checkpointing=False,
        )
        prepared = SFTTrainer(
            model=model, args=config, train_dataset=dataset, processing_class=tokenizer
        ).train_dataset
    examples = [{k: prepared[i][k] for k in ("input_ids", "labels")} for i in range(batch_size)]
    losses = []
    for padding_free in (False, True):
        batch = DataCollatorForLanguageModeling(tokenizer.pad_token_id, padding_free=padding_free)(
            examples
        )
        keys = ("input_ids", "labels", "attention_mask", "position_ids")
        with torch.no_grad():
            losses.append(
                float(model(**{k: v for k, v in batch.items() if k in keys}, use_cache=False).loss)
            )
    return abs(losses[0] - losses[1])


def main(argv: list[str] | None = None) -> None:
    parser = SahParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument(
        "--repeats", type=int, default=3, help="time each mode this often, keep the best"
    )
    parser.add_argument(
        "--hidden", type=int, default=64, help="tiny model width (64 = the test model)"
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument(
        "--model", type=Path, help="an existing model folder instead of the tiny one"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: steadiest on a shared machine)",
    )
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from trainers.tiny_model import build_tiny_model

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    workdir = tempfile.TemporaryDirectory()
    model_dir = args.model or build_tiny_model(
        Path(workdir.name) / "tiny", hidden=args.hidden, layers=args.layers
    )
    examples = make_examples(args.examples)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(tokenizer(e["prompt"] + e["completion"])["input_ids"]) + 1 for e in examples]
    mean_len = statistics.mean(lengths)
    dataset = datasets.Dataset.from_list(examples)

    print(
        f"model: {model_dir} (hidden {args.hidden}, {args.layers} layers); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads on {os.cpu_count()} CPUs"
    )
    print(
        f"data: {args.examples} examples, tokens per example min {min(lengths)} / mean {mean_len:.0f} / "
        f"max {max(lengths)}; batch {args.batch_size}; one epoch per run, best of {args.repeats}"
    )
    print(
        f"check: |loss padded - loss padding-free| on one batch = {check_same_loss(model_dir, dataset, args.batch_size):.2e}"
    )

    results = {}
    for mode in MODES:
        runs = [run_mode(mode, model_dir, dataset, args, mean_len) for _ in range(args.repeats)]
        results[mode] = min(runs, key=lambda r: r.seconds)
        print(f"  {mode}: " + ", ".join(f"{r.seconds:.2f}s" for r in runs), file=sys.stderr)

    base = results["padded"]
    print(
        f"\n{'mode':<13} {'steps':>5} {'seconds':>8} {'real tok':>9} {'computed':>9} {'padding':>8} {'tokens/s':>9} {'speed-up':>8}"
    )
    for mode, r in results.items():
        print(
            f"{mode:<13} {r.steps:>5} {r.seconds:>8.2f} {r.real:>9} {r.positions:>9} "
            f"{r.padding_share:>8.1%} {r.tokens_per_s:>9.0f} {r.tokens_per_s / base.tokens_per_s:>7.2f}x"
        )
    print(f"\nfraction of compute spent on padding (padded batches): {base.padding_share:.1%}")
    for mode in MODES[1:]:
        print(
            f"ratio tokens/s {mode} / padded: {results[mode].tokens_per_s / base.tokens_per_s:.2f}"
        )
    workdir.cleanup()


if __name__ == "__main__":
    main()

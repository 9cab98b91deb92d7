"""Build a tiny random-init Llama + byte-level BPE tokenizer on the spot.

Used by the tests, the CPU demo and the benchmarks: nothing is downloaded, and the result is an
ordinary HF checkpoint folder, so every code path that serves a real model (lm-eval `--model hf`,
TRL trainers, PEFT) runs unchanged on it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
}

# A plain chat template so the chat-formatting paths can be exercised on the tiny model too.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def default_corpus(n_lines: int = 2000, seed: int = 0) -> list[str]:
    """Word-problem-like English with digits, so the BPE merges cover what the tasks print."""
    rng = random.Random(seed)
    names = ["Ann", "Bob", "Carla", "Dev", "Eli", "Fatima", "Gus", "Hana"]
    things = ["apples", "books", "coins", "marbles", "pencils", "stamps", "cookies", "shells"]
    lines = []
    for _ in range(n_lines):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        name, thing = rng.choice(names), rng.choice(things)
        lines.append(
            f"Question: {name} has {a} {thing} and buys {b} more. How many {thing} does "
            f"{name} have?\nAnswer: {name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {thing}.\n"
            f"#### {a + b}"
        )
    lines += ["The capital of France is Paris. Write a short answer in English, then stop."] * 20
    return lines


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


def build_tiny_model(
    out_dir: str | Path,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    head_dim: int = 32,
) -> Path:
    """Write a random-init LlamaForCausalLM + tokenizer to `out_dir` and return the path.

    The head size is 32 by default, the smallest vLLM's CPU attention supports (16 fails), so
    the same tiny model runs on `--backend hf` and on the real vLLM engine.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus if corpus is not None else default_corpus(), vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // head_dim),
        num_key_value_heads=max(1, hidden // head_dim),
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pretrain_tiny_model(
    model_dir: str | Path,
    corpus: list[str],
    steps: int = 600,
    batch_size: int = 32,
    seq_len: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> dict[str, float]:
    """A short causal-LM pre-training of the model in `model_dir` on `corpus`, saved in place.

    Lines are joined with EOS and packed into `seq_len`-token blocks (nanoGPT style). Returns the
    first and last training loss, so a caller can check that something was learned.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids: list[int] = []
    for line in corpus:
        ids += tokenizer(line, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    data = torch.tensor(ids[: len(ids) // seq_len * seq_len]).view(-1, seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="pre-training", unit="step"):
        batch = data[torch.randint(len(data), (batch_size,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.save_pretrained(model_dir)
    return {"first_loss": losses[0], "last_loss": sum(losses[-20:]) / len(losses[-20:])}

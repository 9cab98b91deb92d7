"""vLLM: every adapter of one base model in one generate call (record, generate once, replay).

With LoRA switching, one engine serves a base model and every adapter on it. Evaluating the
adapters one after another gives each its own generate call, with its own tail of long
generations while the rest of the batch sits idle. vLLM can mix requests for different
adapters in one batch (a `LoRARequest` per prompt, up to `max_loras` adapters per step), so
the sweep does this for the checkpoints of such an engine:

1. record: each checkpoint's tasks go through lm-eval as usual, up to its generate call, whose
   prompts (token ids, sampling parameters, adapter) are recorded instead of generated; the
   evaluation stops there (nothing is scored or written);
2. generate: one `LLM.generate` call for the recorded prompts of all checkpoints, each prompt
   with its own adapter;
3. replay: the checkpoints are evaluated exactly as without mixing (the same lm-eval calls,
   ledger, locks and files), the engine answering each prompt from step 2.

A prompt that step 2 did not see (a unit finished by another sweep meanwhile changes nothing;
a task with random few-shot choices might) is generated then, so replay is never wrong, only
slower. Prompts are matched by adapter id, prompt token ids and the full sampling parameters;
greedy results equal adapter-by-adapter ones (tests/test_sweep_mixed_vllm.py).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sah_tasks import sweep

log = logging.getLogger("sah.sweep")


class _Recorded(Exception):
    """Raised after a checkpoint's generate requests were recorded: its evaluation stops."""


def _key(prompt: Any, params: Any, lora: Any) -> tuple:
    tokens = prompt["prompt_token_ids"] if isinstance(prompt, dict) else prompt.prompt_token_ids
    return (getattr(lora, "lora_int_id", 0), tuple(tokens), repr(params))


def _per_prompt(value: Any, n: int) -> list:
    return list(value) if isinstance(value, list | tuple) else [value] * n


@dataclass
class MixedEngine:
    """Stands in for lm-eval's `vllm.LLM` (`lm.model`): records, or replays, generate calls."""

    engine: Any  # the real vllm.LLM
    recording: bool = False
    pending: dict[tuple, tuple] = field(default_factory=dict)  # key -> (prompt, params, lora)
    outputs: dict[tuple, Any] = field(default_factory=dict)  # key -> vLLM RequestOutput
    replayed: int = 0
    generated_late: int = 0

    def __getattr__(self, name: str) -> Any:  # everything else is the real engine's
        if name == "engine":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)

    def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None, **kw):
        prompts = list(prompts)
        params = _per_prompt(sampling_params, len(prompts))
        loras = _per_prompt(lora_request, len(prompts))
        keys = [_key(p, s, lo) for p, s, lo in zip(prompts, params, loras, strict=True)]
        if self.recording:
            for key, p, s, lo in zip(keys, prompts, params, loras, strict=True):
                self.pending.setdefault(key, (p, s, lo))
            empty = SimpleNamespace(text="", token_ids=[])
            return [SimpleNamespace(outputs=[empty]) for _ in prompts]
        missing = [key for key in dict.fromkeys(keys) if key not in self.outputs]
        if missing:  # never answered wrongly: what was not recorded is generated now
            self.generated_late += len(missing)
            late = dict(zip(keys, zip(prompts, params, loras, strict=True), strict=True))
            self.outputs.update(self._generate({k: late[k] for k in missing}, use_tqdm, **kw))
        self.replayed += len(prompts) - sum(1 for key in keys if key in missing)
        return [self.outputs[key] for key in keys]

    def generate_recorded(self) -> None:
        """One real generate call for every recorded prompt on an adapter, each with its own
        adapter (and one for the base model's own prompts, see `_generate`)."""
        if not self.pending:
            return
        t0 = time.time()
        self.outputs.update(self._generate(self.pending, use_tqdm=True))
        adapters = len({k[0] for k in self.pending})
        log.info("generated %d prompts of %d adapter(s) together in %.1fs",
                 len(self.pending), adapters, time.time() - t0)  # fmt: skip
        self.pending.clear()

    def _generate(self, todo: dict[tuple, tuple], use_tqdm: bool, **kw) -> dict[tuple, Any]:
        """Generate `todo` (key -> prompt, params, adapter): the prompts on an adapter in one
        call, the base model's own (no adapter) in another. vLLM 0.32's CPU build answers a
        no-adapter prompt batched with adapter prompts as if it had an adapter (seen here:
        the base's prompts got the last adapter's generations); adapters mixed with each other
        are answered correctly."""
        out: dict[tuple, Any] = {}
        for with_adapter in (True, False):
            keys = [k for k, (_, _, lora) in todo.items() if (lora is not None) == with_adapter]
            if not keys:
                continue
            prompts, params, loras = zip(*(todo[k] for k in keys), strict=True)
            outs = self.engine.generate(list(prompts), sampling_params=list(params),
                                        use_tqdm=use_tqdm,
                                        lora_request=list(loras) if with_adapter else None,
                                        **kw)  # fmt: skip
            out.update(zip(keys, outs, strict=True))
        return out


def mixing_planned(group: sweep.EngineGroup, opts: sweep.SweepOptions) -> bool:
    """Whether the group's adapters are to be mixed in one engine pass, as far as can be told
    before the engine is built (it sizes the engine's adapter slots): vLLM switching adapters
    per request, more than one checkpoint, and no response cache (it would store the
    recording pass's empty answers)."""
    return group.spec.switching and opts.pooled and len(group.members) > 1 and not opts.use_cache


def mixable(lm, group: sweep.EngineGroup, opts: sweep.SweepOptions) -> bool:
    """`mixing_planned`, and the built engine allows it: in this process (not lm-eval's Ray
    data parallel) and one that generates."""
    return (
        mixing_planned(group, opts)
        and getattr(lm, "data_parallel_size", 1) == 1
        and hasattr(getattr(lm, "model", None), "generate")
    )


@contextmanager
def one_generate_call(lm, group: sweep.EngineGroup, task_manager, opts, requests, book):
    """Record every checkpoint's prompts, generate them in one call, and replay inside."""
    mixed = MixedEngine(lm.model)
    lm.model = mixed
    try:
        for _, adapter, units in group.members:
            lm.lora_request = book.request(adapter) if adapter is not None else None
            _record(lm, mixed, units, task_manager, opts, requests)
        lm.lora_request = None
        mixed.generate_recorded()
        yield mixed
    finally:
        lm.model = mixed.engine
    log.info("replayed %d generations; %d generated late", mixed.replayed, mixed.generated_late)


def _record(lm, mixed: MixedEngine, units, task_manager, opts, requests) -> None:
    """Run one checkpoint's evaluation up to the end of its generate call, recording prompts.

    Only `generate_until` is recorded; other request types (none of sah's tasks has one) run
    for real before it and again at replay. A failure here only costs the mixing: replay
    evaluates the checkpoint normally and reports what fails there.
    """

    def record_then_stop(reqs, *args, **kwargs):
        mixed.recording = True
        try:
            real(reqs, *args, **kwargs)
        finally:
            mixed.recording = False
        raise _Recorded

    real = lm.generate_until
    lm.generate_until = record_then_stop
    try:
        sweep.run_lm_eval(lm, units, task_manager, opts, requests[units[0].key], None)
    except _Recorded:
        pass
    except Exception as e:  # logged as text: a kept traceback would keep the engine alive
        log.warning("recording %s failed (%s: %s); it is generated on its own",
                    units[0].checkpoint.rel, type(e).__name__, e)  # fmt: skip
    finally:
        del lm.generate_until  # the class's method again

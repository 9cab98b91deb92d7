"""sah_tasks/mixed.py without an engine: what is recorded, generated together, and replayed."""

from __future__ import annotations

from types import SimpleNamespace

from sah_tasks import mixed, sweep


class FakeEngine:
    """Answers each prompt with `lora id:first token`, and records every generate call."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None):
        loras = lora_request if isinstance(lora_request, list) else [lora_request] * len(prompts)
        self.calls.append([getattr(lo, "lora_int_id", 0) for lo in loras])
        return [
            SimpleNamespace(outputs=[SimpleNamespace(text=f"{getattr(lo, 'lora_int_id', 0)}:"
                                                          f"{p['prompt_token_ids'][0]}")])
            for p, lo in zip(prompts, loras, strict=True)
        ]  # fmt: skip


def prompt(*tokens):
    return {"prompt_token_ids": list(tokens)}


LORA = {i: SimpleNamespace(lora_int_id=i) for i in (1, 2)}


def test_adapters_share_one_call_and_the_base_gets_its_own():
    engine = FakeEngine()
    m = mixed.MixedEngine(engine)
    m.recording = True
    for lora in (None, LORA[1], LORA[2]):  # n0, then two adapters, as lm-eval calls it
        outs = m.generate([prompt(5), prompt(6)], sampling_params="greedy", lora_request=lora)
        assert [o.outputs[0].text for o in outs] == ["", ""]  # nothing generated yet
    assert engine.calls == []
    m.recording = False
    m.generate_recorded()
    # the adapters' prompts together, the base's apart (vLLM CPU answers it wrongly otherwise)
    assert sorted(map(sorted, engine.calls)) == [[0, 0], [1, 1, 2, 2]]
    engine.calls.clear()
    outs = m.generate([prompt(6), prompt(5)], sampling_params="greedy", lora_request=LORA[2])
    assert [o.outputs[0].text for o in outs] == ["2:6", "2:5"] and engine.calls == []
    assert m.replayed == 2 and m.generated_late == 0


def test_what_was_not_recorded_is_generated_not_guessed():
    engine = FakeEngine()
    m = mixed.MixedEngine(engine)
    m.recording = True
    m.generate([prompt(5)], sampling_params="greedy", lora_request=LORA[1])
    m.recording = False
    m.generate_recorded()
    # other sampling parameters, another adapter: a different request, generated now
    outs = m.generate([prompt(5), prompt(5)], sampling_params=["greedy", "t=1"],
                      lora_request=LORA[1])  # fmt: skip
    assert [o.outputs[0].text for o in outs] == ["1:5", "1:5"]
    assert m.generated_late == 1 and m.replayed == 1 and engine.calls[-1] == [1]
    m.generate([prompt(5)], sampling_params="greedy", lora_request=LORA[2])
    assert m.generated_late == 2


def test_engine_slots_for_every_adapter_unless_given(tmp_path):
    adapters = []
    for i in range(3):
        folder = tmp_path / f"a{i}"
        folder.mkdir()
        (folder / "adapter_config.json").write_text('{"r": 8}')
        adapters.append(folder)
    spec = sweep.EngineSpec("base", switching=True)
    group = sweep.EngineGroup(spec, [(None, a, []) for a in adapters])

    def args(**kw):
        opts = sweep.SweepOptions(backend="vllm", **kw)
        return dict(p.split("=", 1) for p in sweep.engine_model_args(group, opts).split(","))

    assert args()["max_loras"] == args()["max_cpu_loras"] == "3"
    assert "max_loras" not in args(pooled=False)  # adapter by adapter: vLLM's default (1)
    # nothing is mixed with a response cache either: no slot reserved (GPU memory) for nothing
    assert "max_loras" not in args(use_cache=str(tmp_path / "cache"))
    given = args(model_args="max_loras=2")
    assert given["max_loras"] == "2" and "max_cpu_loras" not in given

"""Facts100: the shipped dataset, its validator, tasks, training sources, and error breakdown."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.facts100 import (
    MISSING,
    breakdown,
    category_counts,
    condition_of,
    facts100_outputs,
)
from sah_tasks.facts100 import ENV_VAR, SHIPPED_FILE, Facts100DataError, load_events
from sah_tasks.facts100.__main__ import main as facts100_cli
from sah_tasks.facts100.sources import document_records, event_documents, qa_records
from sah_tasks.facts100.validate import validate_file
from sah_tasks.multihop.utils import normalize_answer

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def _events() -> list[dict]:
    return [json.loads(line) for line in SHIPPED_FILE.read_text(encoding="utf-8").splitlines()]


def _write(path: Path, events: list) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ dataset
def test_shipped_file_passes_validator(capsys):
    assert [str(p) for p in validate_file(SHIPPED_FILE)] == []
    assert facts100_cli(["validate", str(SHIPPED_FILE)]) == 0
    assert capsys.readouterr().out.strip().endswith(": OK")


def test_shipped_file_is_compiled_from_its_hand_written_sources(capsys):
    from sah_tasks.facts100.authoring.__main__ import main as build

    assert build(["--check"]) == 0, capsys.readouterr()


def test_shipped_dataset_shape():
    events = _events()
    assert len(events) == 100 and len({e["id"] for e in events}) == 100
    assert min(e["date"] for e in events) >= "2026-01-01"
    direct = [q for e in events for q in e["direct"]]
    multihop = [q for e in events for q in e["multihop"]]
    assert len(direct) >= 200 and len(multihop) >= 100
    # every multihop question links to a direct question of its own event answering its bridge
    for e in events:
        answers = {q["id"]: {normalize_answer(a) for a in [q["answer"], *q["aliases"]]}
                   for q in e["direct"]}  # fmt: skip
        for m in e["multihop"]:
            assert normalize_answer(m["bridge"]) in answers[m["direct_id"]], m["id"]
    # varied world-knowledge hops, not one template
    assert len({m["answer"] for m in multihop}) >= 70


def _corrupt(events: list[dict]) -> tuple[list, list[str]]:
    """A copy of the dataset with known defects, and the message each must produce."""
    ev = copy.deepcopy(events)
    ev[0]["date"] = "2025-06-01"
    unlinked = next(q for q in ev[13]["direct"]
                    if q["id"] not in {m["direct_id"] for m in ev[13]["multihop"]})  # fmt: skip
    unlinked["answer"], unlinked["aliases"] = "Zanzibar Ltd", []
    ev[2]["multihop"][0]["bridge"] = "Atlantis"
    ev[4]["entities"].append(ev[3]["entities"][0])  # f005 claims a name of f004
    ev[5]["train_qa"][0]["question"] = ev[5]["direct"][0]["question"]
    ev[6]["id"] = ev[7]["id"]
    ev[8]["article"] += f" It is near {ev[8]['multihop'][0]['answer']}."
    del ev[9]["paraphrases"]
    ev[10]["paraphrases"] = ev[10]["paraphrases"][:1]
    ev[11]["multihop"][0]["direct_id"] = "f999-d1"
    expected = [
        "line 1 (f001): date 2025-06-01 is before 2026-01-01",
        f"line 14 (f014) direct {unlinked['id']}: answer 'Zanzibar Ltd' (nor any alias) is not "
        "in the article",
        "line 3 (f003) multihop f003-m1: bridge 'Atlantis' is not in the article",
        "line 3 (f003) multihop f003-m1: bridge 'Atlantis' is not the answer of its linked direct",
        f"line 5 (f005): entity {ev[3]['entities'][0]!r} is also an entity of f004",
        f"line 5 (f005): entity {ev[3]['entities'][0]!r} does not appear in the article",
        "line 6 (f006) direct f006-d1: question is also a train_qa question",
        "line 8 (f008): id 'f008' already used on line 7",
        f"line 9 (f009) multihop f009-m1: answer {ev[8]['multihop'][0]['answer']!r} appears in "
        "the event's training text",
        "line 10 (f010): missing field `paraphrases`",
        "line 11 (f011): has 1 paraphrases; expected 3 to 5",
        "line 12 (f012) multihop f012-m1: direct_id 'f999-d1' is not a direct question",
        "line 101: not valid JSON",
    ]
    return [*ev, "{not json"], expected


def test_corrupted_copy_fails_with_one_line_per_problem(tmp_path, capsys):
    bad, expected = _corrupt(_events())
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in bad), encoding="utf-8"
    )
    assert facts100_cli(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    for message in expected:
        hits = [line for line in lines if f"{path}: {message}" in line]
        assert len(hits) == 1, f"{message!r} not reported exactly once:\n" + "\n".join(lines)
    # nothing else: every printed line is one of the injected defects
    assert len(lines) == len(expected), "\n".join(lines)


def test_normalisation_matches_the_squad_reference():
    """The shared (str.translate) normaliser equals the official per-character SQuAD code."""
    import re
    import string

    def squad(text: str) -> str:
        text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())

    texts = ["The Danube's  banks, a river!", "Mn—a-an-the", "Ångström: 1,100 m (approx.)",
             "THE end", *(e["article"] for e in _events()[:5])]  # fmt: skip
    assert [normalize_answer(t) for t in texts] == [squad(t) for t in texts]


def test_validator_rejects_invented_names_shared_across_events(tmp_path):
    ev = _events()[:3]
    ev[2]["entities"].append("Halvorsen Foundation")
    ev[2]["article"] += " The Halvorsen Foundation paid for it."
    problems = [str(p) for p in validate_file(_write(tmp_path / "x.jsonl", ev), expected=3)]
    assert problems == [
        "line 3 (f003): entity 'Halvorsen Foundation' shares the name part 'halvorsen' with "
        "'Halvorsen-Tiede Medal' of f001; invented names must not share parts across events"
    ]


# ------------------------------------------------------------------------------ training sources
def test_training_sources_cover_the_documents_and_never_show_eval_questions():
    docs, qa = document_records(), qa_records()
    events = _events()
    assert len(docs) == sum(1 + len(e["paraphrases"]) for e in events) == 400
    assert len({d["id"] for d in docs}) == len(docs)
    assert docs[0]["text"].startswith(events[0]["title"] + "\n\n" + events[0]["article"][:40])
    assert len(qa) == sum(len(e["train_qa"]) for e in events)
    assert all(r["prompt"].startswith("Question: ") and r["prompt"].endswith("\nAnswer:")
               and r["completion"].startswith(" ") for r in qa)  # fmt: skip
    eval_q = {normalize_answer(q["question"]) for e in events for k in ("direct", "multihop")
              for q in e[k]}  # fmt: skip
    train_q = {normalize_answer(r["prompt"][len("Question: ") : -len("\nAnswer:")]) for r in qa}
    assert not eval_q & train_q
    corpus = normalize_answer(" ".join(d["text"] for d in docs))
    assert not [q for q in eval_q if q in corpus]


def test_sources_follow_the_env_override(monkeypatch, fixtures_dir):
    monkeypatch.setenv(ENV_VAR, str(fixtures_dir / "facts100" / "facts3.jsonl"))
    assert len(document_records()) == 12 and len(qa_records()) == 6
    monkeypatch.setenv(ENV_VAR, str(fixtures_dir / "facts100" / "missing.jsonl"))
    with pytest.raises(Facts100DataError, match="missing.jsonl.*does not exist"):
        document_records()


def test_loaders_refuse_a_file_that_leaks_an_eval_question(tmp_path, monkeypatch):
    ev = _events()[:2]
    ev[1]["train_qa"][0]["question"] = ev[0]["multihop"][0]["question"]
    monkeypatch.setenv(ENV_VAR, str(_write(tmp_path / "leak.jsonl", ev)))
    with pytest.raises(Facts100DataError, match="f001-m1: question is also a train_qa question"):
        qa_records()


# ------------------------------------------------------------------------------ lm-eval tasks
def test_task_rows_and_scoring():
    from sah_tasks.facts100 import utils

    direct = utils.load_direct()["test"]
    multihop = utils.load_multihop()["test"]
    assert direct.num_rows == sum(len(e["direct"]) for e in _events())
    assert multihop.num_rows == sum(len(e["multihop"]) for e in _events())
    doc = multihop[0]
    assert utils.doc_to_text(doc) == f"Question: {doc['question']}\nAnswer:"
    assert doc["direct_id"] in set(direct["id"])
    assert utils.process_results(doc, [" Donau\nQuestion: ..."]) == {"exact_match": 1.0, "f1": 1.0}
    assert utils.process_results(doc, ["the blue Danube"])["exact_match"] == 0.0
    assert 0 < utils.process_results(doc, ["the blue Danube"])["f1"] < 1
    assert utils.process_results(doc, [None]) == {"exact_match": 0.0, "f1": 0.0}


def test_tasks_run_end_to_end_through_sah_eval(tiny_model_dir, tmp_path):
    from analysis.synthetic import write_manifest

    ckpt = tmp_path / "runs" / "exp" / "tiny-llama" / "multihop" / "n0"
    write_manifest(ckpt, "exp", "tiny-llama", "multihop", 0)
    cmd = [str(BIN / "sah-eval"), "--model", "hf",
           "--model_args", f"pretrained={tiny_model_dir},dtype=float32", "--device", "cpu",
           "--tasks", "sah_facts100_direct,sah_facts100_multihop", "--limit", "3",
           "--output_path", str(ckpt / "eval" / "facts100"), "--log_samples"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (results_file,) = ckpt.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]
    for task in ("sah_facts100_direct", "sah_facts100_multihop"):
        assert {"exact_match,none", "f1,none"} <= set(results[task]), results[task]
    samples = [json.loads(x) for f in ckpt.rglob("samples_sah_facts100_multihop_*.jsonl")
               for x in f.read_text().splitlines()]  # fmt: skip
    assert [s["doc"]["id"] for s in samples] == ["f001-m1", "f002-m1", "f002-m2"]
    # the analysis finds these results and breaks them down (the first 3 direct questions are
    # f001-d1, f001-d2, f002-d1, so f002-m2's linked question f002-d2 was not evaluated)
    written = facts100_outputs(tmp_path / "runs" / "exp", tmp_path / "out")
    assert {p.name for p in written} >= {
        "facts100.csv",
        "facts100_questions.csv",
        "fig_facts100.png",
    }
    per_q = pd.read_csv(tmp_path / "out" / "facts100_questions.csv")
    assert per_q.set_index("id").loc["f002-m2", "category"] == MISSING


# ------------------------------------------------------------------------------ knowledge injection
def _answer_loglik(model, tok, events) -> float:
    """Mean per-token log-likelihood of each direct answer after its question prompt."""
    import torch

    model.eval()
    scores = []
    with torch.no_grad():
        for e in events:
            for q in e["direct"]:
                prompt = tok(f"Question: {q['question']}\nAnswer:", add_special_tokens=False)
                answer = tok(f" {q['answer']}", add_special_tokens=False)
                ids = torch.tensor([prompt["input_ids"] + answer["input_ids"]])
                logp = model(ids).logits[0, :-1].log_softmax(-1)
                token_lp = logp.gather(1, ids[0, 1:, None])[:, 0]
                scores.append(token_lp[len(prompt["input_ids"]) - 1 :].mean().item())
    return sum(scores) / len(scores)


def test_training_on_documents_raises_the_likelihood_of_their_answers(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    events = load_events()
    trained, control = events[:5], events[5:10]
    before = _answer_loglik(model, tok, trained), _answer_loglik(model, tok, control)

    # articles + paraphrases of the 5 trained events, cut into 128-token blocks (loss on all tokens)
    blocks = []
    for e in trained:
        for doc in event_documents(e):
            ids = tok(doc["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            blocks += [ids[i : i + 128] for i in range(0, len(ids), 128)]
    rng = random.Random(0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(30):
        batch = rng.sample(blocks, 8)
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for i, b in enumerate(batch):
            ids[i, : len(b)] = labels[i, : len(b)] = torch.tensor(b)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = _answer_loglik(model, tok, trained), _answer_loglik(model, tok, control)

    gain_trained, gain_control = after[0] - before[0], after[1] - before[1]
    assert gain_trained > 0.5, (before, after)
    # more than general language modelling: answers of events not trained on gain less
    assert gain_trained > gain_control + 0.05, (gain_trained, gain_control)


# ------------------------------------------------------------------------------ error breakdown
def test_breakdown_on_hand_made_rows_gives_the_expected_counts():
    direct = pd.DataFrame({"ckpt": ["a"] * 4 + ["b"] * 4,
                           "id": ["d1", "d2", "d3", "d4"] * 2,
                           "correct": [1, 1, 0, 0, 0, 1, 1, 1]})  # fmt: skip
    multihop = pd.DataFrame({"ckpt": ["a"] * 5 + ["b"] * 4,
                             "id": ["m1", "m2", "m3", "m4", "m5", "m1", "m2", "m3", "m4"],
                             "direct_id": ["d1", "d2", "d3", "d4", "d9", "d1", "d2", "d3", "d4"],
                             "correct": [1, 0, 0, 1, 0, 0, 0, 1, 1]})  # fmt: skip
    per_q = breakdown(direct, multihop, by=["ckpt"])
    cats = dict(zip(per_q["ckpt"] + "/" + per_q["id"], per_q["category"], strict=True))
    assert cats == {
        "a/m1": "correct", "a/m2": "reasoning_failed", "a/m3": "not_integrated",
        "a/m4": "correct", "a/m5": MISSING,
        "b/m1": "not_integrated", "b/m2": "reasoning_failed", "b/m3": "correct", "b/m4": "correct",
    }  # fmt: skip
    assert per_q["shortcut"].tolist() == [False, False, False, True, False] + [False] * 4
    counts = category_counts(per_q, by=["ckpt"]).set_index("ckpt")
    assert counts.loc["a", ["not_integrated", "reasoning_failed", "correct", MISSING, "shortcut"]
                      ].tolist() == [1, 1, 2, 1, 1]  # fmt: skip
    assert counts.loc["b", ["not_integrated", "reasoning_failed", "correct"]].tolist() == [1, 1, 2]
    assert counts.loc["a", "correct_frac"] == pytest.approx(0.5)  # of the 4 with a known direct


def _facts_samples(task: str, correct: dict[str, int]) -> list[dict]:
    from analysis.synthetic import _sample

    rows = []
    for i, (qid, ok) in enumerate(correct.items()):
        doc = {"id": qid, "question": f"q {qid}", "answer": "x", "aliases": []}
        if task.endswith("multihop"):
            doc["direct_id"] = qid.replace("m", "d")
        rows.append(
            _sample(i, doc, "x", "y", "y", "none", {"exact_match": float(ok), "f1": float(ok)})
        )
    return rows


def test_facts100_outputs_place_checkpoints_in_the_bm_pm_design(tmp_path):
    from analysis.synthetic import write_eval, write_manifest

    exp = tmp_path / "runs" / "facts100"
    pm = exp / "tiny-8b" / "multihop" / "n100"
    layout = {  # checkpoint -> (task, n, base_model, direct correct, multihop correct)
        exp / "tiny-8b" / "multihop" / "n0": ("multihop", 0, "hub/tiny", [0, 0, 0, 0], [0, 0, 0, 0]),
        pm: ("multihop", 100, "hub/tiny", [0, 0, 0, 0], [0, 0, 0, 0]),
        exp / "tiny-8b" / "facts100_documents" / "n400": (
            "facts100_documents", 400, "hub/tiny", [1, 1, 1, 0], [0, 0, 1, 0]),
        exp / "tiny-8b_pm" / "facts100_documents" / "n400": (
            "facts100_documents", 400, str(pm), [1, 1, 1, 0], [1, 1, 0, 0]),
        exp / "tiny-8b_pm" / "facts100_documents" / "n0": (  # the PM again: counted once
            "facts100_documents", 0, str(pm), [0, 0, 0, 0], [0, 0, 0, 0]),
    }  # fmt: skip
    for ckpt, (task, n, base, d_ok, m_ok) in layout.items():
        write_manifest(ckpt, "facts100", ckpt.parent.parent.name, task, n)
        manifest = json.loads((ckpt / "sah_manifest.json").read_text())
        (ckpt / "sah_manifest.json").write_text(json.dumps({**manifest, "base_model": base}))
        ids = ["1", "2", "3", "4"]
        write_eval(
            ckpt,
            "sah_facts100_direct",
            _facts_samples("direct", {f"d{i}": ok for i, ok in zip(ids, d_ok, strict=True)}),
        )
        write_eval(ckpt, "sah_facts100_multihop",
                   _facts_samples("multihop", {f"m{i}": ok for i, ok in zip(ids, m_ok, strict=True)}))  # fmt: skip

    written = facts100_outputs(exp, tmp_path / "out")
    assert {p.name for p in written} == {"facts100.csv", "facts100_questions.csv",
                                         "fig_facts100.png", "fig_facts100.pdf"}  # fmt: skip
    summary = pd.read_csv(tmp_path / "out" / "facts100.csv")
    assert summary["condition"].tolist() == ["BM, before", "BM, after",
                                             "PM (multihop n100), before", "PM (multihop n100), after"]  # fmt: skip
    s = summary.set_index("condition")
    assert s.loc["BM, after", ["direct_em", "multihop_em"]].tolist() == [0.75, 0.25]
    assert s.loc["BM, after", ["not_integrated", "reasoning_failed", "correct"]].tolist() == [
        1,
        2,
        1,
    ]
    assert s.loc["PM (multihop n100), after", ["not_integrated", "reasoning_failed", "correct"]
                 ].tolist() == [1, 1, 2]  # fmt: skip
    assert s.loc["PM (multihop n100), after", "facts_training"] == "facts100_documents n400"
    assert (s["base_model"] == "hub/tiny").all()


def test_facts100_outputs_is_empty_without_facts100_results(tmp_path):
    from analysis.synthetic import make_synthetic_run

    exp = make_synthetic_run(tmp_path, models=("tiny-8b",), scales=(0, 100), n_items=5)
    assert facts100_outputs(exp, tmp_path / "out") == []
    assert facts100_outputs(tmp_path / "nowhere", tmp_path / "out") == []
    assert not (tmp_path / "out").exists()


def test_condition_of_follows_the_lineage(tmp_path):
    pm = tmp_path / "pm"
    pm.mkdir()
    (pm / "sah_manifest.json").write_text(json.dumps(
        {"task": "multihop", "n": 1000, "base_model": "meta-llama/Meta-Llama-3-8B"}))  # fmt: skip
    cond = condition_of({"task": "facts100_qa", "n": 200, "base_model": str(pm)}, tmp_path)
    assert (cond.model, cond.post_training, cond.facts_training, cond.stage, cond.base_model) == (
        "PM",
        "multihop n1000",
        "facts100_qa n200",
        "after",
        "meta-llama/Meta-Llama-3-8B",
    )
    base = condition_of({"task": "facts100_documents", "n": 0, "base_model": "hub/x"}, tmp_path)
    assert (base.model, base.stage, base.label) == ("BM", "before", "BM, before")
    # the trainers write lineage paths relative to the manifest's folder (`../n1000`)
    run = tmp_path / "runs" / "exp" / "m"
    stage = run / "multihop" / "n1000"
    stage.mkdir(parents=True)
    (stage / "sah_manifest.json").write_text((pm / "sah_manifest.json").read_text())
    here = run / "facts100_qa" / "n200"
    here.mkdir(parents=True)
    rel = condition_of({"task": "facts100_qa", "n": 200, "base_model": "../../multihop/n1000"},
                       tmp_path / "runs" / "exp", here)  # fmt: skip
    assert (rel.model, rel.post_training, rel.base_model) == (
        "PM", "multihop n1000", "meta-llama/Meta-Llama-3-8B")  # fmt: skip


def _facts_checkpoint(ckpt: Path, task: str, n: int, base: str | None) -> Path:
    """One Facts100-evaluated checkpoint; `base` None: no manifest at all."""
    from analysis.synthetic import write_eval, write_manifest

    write_manifest(ckpt, "facts100", ckpt.parent.parent.name, task, n)
    manifest = ckpt / "sah_manifest.json"
    if base is None:
        manifest.unlink()
    else:
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "base_model": base}))
    write_eval(ckpt, "sah_facts100_direct", _facts_samples("direct", {"d1": 1}))
    write_eval(ckpt, "sah_facts100_multihop", _facts_samples("multihop", {"m1": 0}))
    return ckpt


def test_a_checkpoint_whose_lineage_cannot_be_read_is_an_error_not_a_guess(tmp_path):
    """Each of these used to be placed silently: no manifest as "?"/BM, an unreadable stage
    manifest or a base_model path that names nothing as trained from the hub (BM, not PM)."""
    from analysis.layout import RunLayoutError
    from analysis.results import ResultsError

    exp = tmp_path / "runs" / "facts100"
    pm = exp / "tiny-8b" / "multihop" / "n100"
    facts = _facts_checkpoint(exp / "tiny-8b_pm" / "facts100_documents" / "n400",
                              "facts100_documents", 400, "../../../tiny-8b/multihop/n100")  # fmt: skip
    _facts_checkpoint(pm, "multihop", 100, "hub/tiny")
    for f in (pm / "eval").iterdir():  # the stage itself unevaluated: only its lineage is read
        shutil.rmtree(f)
    summary = facts100_outputs(exp, tmp_path / "ok")  # the intact design places it as a PM
    assert "PM (multihop n100), after" in pd.read_csv(tmp_path / "ok" / "facts100.csv")[
        "condition"].tolist() and summary  # fmt: skip

    (pm / "sah_manifest.json").write_text("{not json")
    with pytest.raises(RunLayoutError, match=r"multihop/n100/sah_manifest.json: cannot read"):
        facts100_outputs(exp, tmp_path / "out")

    shutil.rmtree(pm)  # the stage was moved away: its path names nothing
    with pytest.raises(
        ResultsError, match=r"base_model '\.\./\.\./\.\./tiny-8b/multihop/n100' is no folder"
    ):
        facts100_outputs(exp, tmp_path / "out")

    (facts / "sah_manifest.json").unlink()
    with pytest.raises(
        ResultsError, match=r"facts100_documents/n400: evaluated on .* no sah_manifest"
    ):
        facts100_outputs(exp, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_local_model_folder_without_manifest_is_the_base_model(tmp_path):
    """A base model on disk (weights, no manifest) is a root, like a hub id."""
    local = tmp_path / "models" / "llama"
    local.mkdir(parents=True)
    cond = condition_of({"task": "facts100_qa", "n": 200, "base_model": str(local)}, tmp_path)
    assert (cond.model, cond.base_model, cond.facts_training) == (
        "BM",
        str(local),
        "facts100_qa n200",
    )


def test_experiment_config_trains_on_the_facts100_sources():
    from trainers import sft
    from trainers.data import load_sft_pool

    cpu = ["--bf16", "false", "--use_cpu", "true"]
    run = sft.parse_args(["--config", str(ROOT / "configs/paper/facts100_experiment.yaml"), *cpu])
    assert (run.scale.task, run.scale.scales, run.scale.experiment) == (
        "facts100_documents",
        [0, 400],
        "facts100",
    )
    pool = load_sft_pool(run.scale.task)
    assert pool.kind == "text" and len(pool.examples) == max(run.scale.scales)
    assert len(load_sft_pool("facts100_qa").examples) == 200


def test_a_manifest_that_is_not_utf8_is_a_layout_error_naming_it(tmp_path):
    """It was a raw UnicodeDecodeError out of `python -m analysis`."""
    from analysis.layout import RunLayoutError, read_checkpoint

    ckpt = tmp_path / "exp" / "tiny-8b" / "gsm8k" / "n8"
    ckpt.mkdir(parents=True)
    (ckpt / "sah_manifest.json").write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(RunLayoutError, match=r"n8/sah_manifest.json: cannot read"):
        read_checkpoint(ckpt, tmp_path / "exp")

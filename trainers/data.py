"""Training-data registry: for each task, where its examples come from and how they are formatted.

Every source maps its rows to the evaluation prompt format used for base models,

    prompt      "Question: {question}\\nAnswer:"
    completion  " {answer}"            (leading space; the trainer appends EOS)

so a checkpoint is trained on exactly the text the lm-eval task later shows it (GSM8K answers keep
their `#### <number>` line). Hub sources are pinned to a commit; a local JSONL file can replace
any source (`data_files`), with rows either already formatted (`prompt`/`completion`, `text`, or
`prompt`/`chosen`/`rejected`) or in the hub schema of the task (converted like hub rows).

Example ids come from the source's id column when it has one, else from a hash of the formatted
example, so they stay stable when a pool grows — which is what keeps subsets nested
(`trainers.subsets`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sah_tasks.common.data import TaskDataError, read_jsonl

log = logging.getLogger(__name__)

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"

Kind = Literal["prompt_completion", "text", "preference"]
FORMATTED_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected"),
}


class TrainDataError(ValueError):
    """A user-fixable problem with training data: unknown task, missing file, bad row."""


@dataclass(frozen=True)
class Example:
    """One training example: prompt/completion, or a plain `text` for language modelling."""

    id: str
    prompt: str = ""
    completion: str = ""
    text: str | None = None

    def record(self) -> dict[str, str]:
        if self.text is not None:
            return {"text": self.text}
        return {"prompt": self.prompt, "completion": self.completion}


@dataclass(frozen=True)
class PreferencePair:
    """One preference example: the same prompt with a preferred and a dispreferred completion."""

    id: str
    prompt: str
    chosen: str
    rejected: str

    def record(self) -> dict[str, str]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


@dataclass(frozen=True)
class HubDataset:
    path: str
    revision: str  # a commit sha, so the training data never silently changes
    split: str
    name: str | None = None

    def describe(self) -> str:
        config = f"/{self.name}" if self.name else ""
        return f"hf:{self.path}{config}:{self.split}"


@dataclass(frozen=True)
class TaskSource:
    """Where one task's training rows come from and how a raw row becomes a formatted one."""

    task: str
    kind: Kind
    description: str
    hub: HubDataset | None = None
    raw_fields: tuple[str, ...] = ()  # fields a raw (hub-schema) row must have
    convert: Callable[[dict[str, Any]], dict[str, str]] | None = None
    id_field: str | None = None
    loader: str | None = None  # "module:function" returning formatted rows with ids


@dataclass
class Pool:
    """All examples available for one task, with where they came from."""

    task: str
    kind: Kind
    examples: list[Any]
    source: str
    revision: str | None
    content_hash: str

    def train_data(self) -> dict[str, Any]:
        """The manifest's `train_data` entry."""
        return {"source": self.source, "revision": self.revision, "content_hash": self.content_hash}


@dataclass
class _RowContext:
    origin: str  # file or hub source, for messages
    source: TaskSource
    seen: dict[str, dict[str, str]] = field(default_factory=dict)
    duplicates: int = 0


# --------------------------------------------------------------------------------------------
# Row converters (raw hub schema -> formatted)
# --------------------------------------------------------------------------------------------


def qa_record(question: str, answer: str) -> dict[str, str]:
    """The shared eval prompt format: prompt `Question: ...\\nAnswer:`, completion ` answer`."""
    return {"prompt": PROMPT_TEMPLATE.format(question=question), "completion": f" {answer}"}


def _gsm8k(row: dict[str, Any]) -> dict[str, str]:
    return qa_record(row["question"], row["answer"])


def _multihop(row: dict[str, Any]) -> dict[str, str]:
    """Exactly what `sah_multihop` shows: the gold paragraphs, then `Question: ...\nAnswer:`.

    The eval task's own row mapping and prompt builder are used, so HotpotQA rows, SubQA rows and
    plain question/answer rows are formatted for training as they are for evaluation.
    """
    from sah_tasks.multihop.utils import doc_to_text, to_multihop_row

    doc = to_multihop_row(row)
    return {"prompt": doc_to_text(doc), "completion": f" {doc['answers'][0]}"}


def _multihop_closed_book(row: dict[str, Any]) -> dict[str, str]:
    """The question alone: the closed-book form the Facts100 multihop questions are asked in."""
    from sah_tasks.multihop.utils import to_multihop_row

    doc = to_multihop_row(row)
    return qa_record(doc["question"], doc["answers"][0])


def _self_oss_instruct(row: dict[str, Any]) -> dict[str, str]:
    return qa_record(row["instruction"].strip(), row["response"].strip())


def _message(messages: list[dict[str, str]], role: str) -> str:
    for message in messages:
        if message["role"] == role:
            return message["content"].strip()
    raise ValueError(f"no '{role}' message")


def _tulu_if(row: dict[str, Any]) -> dict[str, str]:
    return qa_record(_message(row["messages"], "user"), _message(row["messages"], "assistant"))


def _tulu_if_preference(row: dict[str, Any]) -> dict[str, str]:
    record = qa_record(row["prompt"].strip(), "")
    return {
        "prompt": record["prompt"],
        "chosen": " " + _message(row["chosen"], "assistant"),
        "rejected": " " + _message(row["rejected"], "assistant"),
    }


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def wrong_number(gold: str, key: str) -> str:
    """A deterministic wrong final answer for `gold` (an off-by-some, never equal to gold)."""
    offset = 1 + int(hashlib.sha256(key.encode()).hexdigest(), 16) % 9
    plain = gold.replace(",", "").strip()
    try:
        value = int(plain)
    except ValueError:
        try:
            return f"{float(plain) + offset:g}"
        except ValueError:
            return f"{gold}0"
    return str(value + offset if value - offset < 0 else value - offset)


def corrupt_gsm8k_solution(answer: str, key: str) -> str:
    """An incorrect solution: the last reasoning line and the `####` line give a wrong number.

    The reasoning before it is kept, so the pair differs only where the arithmetic goes wrong —
    the classic "correct vs incorrect solution" pair. On-policy pairs (the model's own sampled
    solutions graded by their final answer) can be given as a local JSONL file instead.
    """
    body, sep, final = answer.rpartition("####")
    if not sep:
        raise ValueError("solution has no '####' final-answer line")
    gold = final.strip()
    wrong = wrong_number(gold, key)
    lines = body.rstrip("\n").split("\n")
    matches = list(_NUMBER.finditer(lines[-1]))
    if matches:  # the last number of the last reasoning line is the step's result
        m = matches[-1]
        lines[-1] = lines[-1][: m.start()] + wrong + lines[-1][m.end() :]
    return "\n".join(lines) + f"\n#### {wrong}"


def _gsm8k_preference(row: dict[str, Any]) -> dict[str, str]:
    record = _gsm8k(row)
    rejected = corrupt_gsm8k_solution(row["answer"], key=row["question"])
    return {"prompt": record["prompt"], "chosen": record["completion"], "rejected": f" {rejected}"}


# --------------------------------------------------------------------------------------------
# Registries
# --------------------------------------------------------------------------------------------

GSM8K_TRAIN = HubDataset(
    "openai/gsm8k", "cc7b047b6e5bb11b4f1af84efc572db110a51b3c", "train", name="main"
)
HOTPOTQA_TRAIN = HubDataset(
    "hotpotqa/hotpot_qa", "1908d6afbbead072334abe2965f91bd2709910ab", "train", "distractor"
)

SFT_SOURCES: dict[str, TaskSource] = {
    "gsm8k": TaskSource(
        task="gsm8k",
        kind="prompt_completion",
        description="GSM8K train (7,473 problems); completion keeps the `#### N` line",
        hub=GSM8K_TRAIN,
        raw_fields=("question", "answer"),
        convert=_gsm8k,
    ),
    "multihop": TaskSource(
        task="multihop",
        kind="prompt_completion",
        description="HotpotQA train (distractor, 90,447 questions): gold paragraphs + question "
        "-> short answer, formatted by the sah_multihop eval task",
        hub=HOTPOTQA_TRAIN,
        raw_fields=("question",),
        convert=_multihop,
        id_field="id",
    ),
    # Facts100's PM model: multihop reasoning over the model's own knowledge, no passages.
    "multihop_closedbook": TaskSource(
        task="multihop_closedbook",
        kind="prompt_completion",
        description="HotpotQA train (distractor, 90,447 questions) closed-book: question -> short "
        "answer, as the sah_facts100_multihop questions are asked",
        hub=HOTPOTQA_TRAIN,
        raw_fields=("question",),
        convert=_multihop_closed_book,
        id_field="id",
    ),
    "coding": TaskSource(
        task="coding",
        kind="prompt_completion",
        description="StarCoder2 self-OSS-instruct, execution-filtered (50,661 Python tasks)",
        hub=HubDataset(
            "bigcode/self-oss-instruct-sc2-exec-filter-50k",
            "e2e58c6b02087295c8a5ca4384cf6106e72d8ba4",
            "train",
        ),
        raw_fields=("instruction", "response"),
        convert=_self_oss_instruct,
        id_field="id",
    ),
    "ifeval": TaskSource(
        task="ifeval",
        kind="prompt_completion",
        description="Tulu-3 persona instruction following (29,980 prompts with IFEval-style constraints)",
        hub=HubDataset(
            "allenai/tulu-3-sft-personas-instruction-following",
            "debe6eac7717c41200c69ab48d81fe622be67826",
            "train",
        ),
        raw_fields=("messages",),
        convert=_tulu_if,
        id_field="id",
    ),
    "facts100_documents": TaskSource(
        task="facts100_documents",
        kind="text",
        description="Facts100 articles + paraphrases; loss on all tokens (continued pre-training)",
        loader="sah_tasks.facts100.sources:document_records",
    ),
    "facts100_qa": TaskSource(
        task="facts100_qa",
        kind="prompt_completion",
        description="Facts100 question-answer pairs, disjoint from the evaluation questions",
        loader="sah_tasks.facts100.sources:qa_records",
    ),
}

PREFERENCE_SOURCES: dict[str, TaskSource] = {
    "gsm8k": TaskSource(
        task="gsm8k",
        kind="preference",
        description="GSM8K train: gold solution (chosen) vs the same solution with a wrong "
        "final step (rejected)",
        hub=GSM8K_TRAIN,
        raw_fields=("question", "answer"),
        convert=_gsm8k_preference,
    ),
    "ifeval": TaskSource(
        task="ifeval",
        kind="preference",
        description="Tulu-3 persona instruction-following preference pairs (19,890)",
        hub=HubDataset(
            "allenai/tulu-3-pref-personas-instruction-following",
            "cdf475940025c0434a22dbd0bbed336a746942fe",
            "train",
        ),
        raw_fields=("prompt", "chosen", "rejected"),
        convert=_tulu_if_preference,
        id_field="id",
    ),
}


def get_source(task: str, registry: dict[str, TaskSource], what: str = "training") -> TaskSource:
    if task not in registry:
        known = ", ".join(sorted(registry))
        raise TrainDataError(f"unknown {what} task {task!r}; known tasks: {known}")
    return registry[task]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_sft_pool(task: str, data_files: str | None = None, revision: str | None = None) -> Pool:
    """The SFT pool of `task`: the pinned hub source, its Python loader, or a local JSONL."""
    return _load_pool(get_source(task, SFT_SOURCES), data_files, revision)


def load_preference_pool(
    task: str, data_files: str | None = None, revision: str | None = None
) -> Pool:
    """The preference pool of `task` (`prompt`/`chosen`/`rejected`)."""
    if data_files is None and task not in PREFERENCE_SOURCES:
        if task in SFT_SOURCES:
            raise TrainDataError(
                f"task {task!r} has no built-in preference data "
                f"(built-in: {', '.join(sorted(PREFERENCE_SOURCES))}); give a local JSONL with "
                "prompt/chosen/rejected rows as preference_data_files"
            )
    source = PREFERENCE_SOURCES.get(task) or _local_only_source(task)
    return _load_pool(source, data_files, revision)


def _local_only_source(task: str) -> TaskSource:
    get_source(task, SFT_SOURCES)  # unknown task names still list the known ones
    return TaskSource(task=task, kind="preference", description="local preference pairs")


def _load_pool(source: TaskSource, data_files: str | None, revision: str | None) -> Pool:
    if data_files is not None:
        path = Path(data_files).expanduser().resolve()
        try:
            rows = read_jsonl(path, origin="data_files")
        except TaskDataError as e:  # missing, empty, not JSONL, not UTF-8
            raise TrainDataError(str(e)) from None
        examples = _examples(
            rows, _RowContext(f"{path}", source), raw_ok=source.convert is not None
        )
        return _pool(source, examples, f"local:{path}", None)
    if source.loader is not None:
        rows = _call_loader(source.loader)
        examples = _examples(rows, _RowContext(source.loader, source), raw_ok=False)
        return _pool(source, examples, f"python:{source.loader}", None)
    if source.hub is None:
        raise TrainDataError(f"task {source.task!r} needs a local data file (data_files)")
    hub = (
        source.hub if revision is None else HubDataset(**{**vars(source.hub), "revision": revision})
    )
    rows = _hub_rows(hub)
    examples = _examples(rows, _RowContext(hub.describe(), source), raw_ok=True, formatted_ok=False)
    return _pool(source, examples, hub.describe(), hub.revision)


def _hub_rows(hub: HubDataset) -> Iterable[dict[str, Any]]:
    import datasets

    log.info("loading %s @ %s", hub.describe(), hub.revision)
    return datasets.load_dataset(hub.path, hub.name, revision=hub.revision, split=hub.split)


def _call_loader(spec: str) -> list[dict[str, Any]]:
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not module_name.startswith(e.name):
            raise
        raise TrainDataError(
            f"training source {spec} is not available ({module_name} is not installed yet); "
            "give a local JSONL file as data_files instead"
        ) from None
    return list(getattr(module, function)())


def _pool(source: TaskSource, examples: list[Any], origin: str, revision: str | None) -> Pool:
    if not examples:
        raise TrainDataError(f"{origin}: no training examples for task {source.task!r}")
    return Pool(source.task, source.kind, examples, origin, revision, content_hash(examples))


def content_hash(examples: Iterable[Example | PreferencePair]) -> str:
    """Hash of the whole pool, independent of row order."""
    lines = sorted(json.dumps([ex.id, ex.record()], sort_keys=True) for ex in examples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _examples(
    rows: Iterable[dict[str, Any]], ctx: _RowContext, *, raw_ok: bool, formatted_ok: bool = True
) -> list[Any]:
    from tqdm.auto import tqdm

    examples = []
    for lineno, row in enumerate(tqdm(rows, desc=f"reading {ctx.source.task}", leave=False), 1):
        record = _format_row(row, ctx, lineno, raw_ok=raw_ok, formatted_ok=formatted_ok)
        example_id = _example_id(row, record, ctx.source)
        if _is_duplicate(example_id, record, ctx, lineno):
            continue
        examples.append(_make_example(ctx.source.kind, example_id, record))
    if ctx.duplicates:
        log.info("%s: dropped %d exact duplicate rows", ctx.origin, ctx.duplicates)
    return examples


def _format_row(
    row: dict[str, Any], ctx: _RowContext, lineno: int, *, raw_ok: bool, formatted_ok: bool
) -> dict[str, str]:
    wanted = FORMATTED_FIELDS[ctx.source.kind]
    where = f"{ctx.origin}:{lineno}"
    partly_formatted = any(k in row for k in wanted) and not any(
        k in row for k in ctx.source.raw_fields
    )
    if formatted_ok and all(isinstance(row.get(k), str) for k in wanted):
        record = {k: row[k] for k in wanted}
    elif raw_ok and ctx.source.convert is not None and not (formatted_ok and partly_formatted):
        missing = [k for k in ctx.source.raw_fields if k not in row]
        if missing:
            raise TrainDataError(
                f"{where}: missing field(s) {missing}; expected either the formatted fields "
                f"{list(wanted)} or the {ctx.source.task} source fields {list(ctx.source.raw_fields)}"
            )
        try:
            record = ctx.source.convert(row)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TrainDataError(f"{where}: cannot convert row ({type(e).__name__}: {e})") from None
    else:
        missing = [k for k in wanted if k not in row]
        if not missing:  # all there, but one is not a string
            bad = next(k for k in wanted if not isinstance(row.get(k), str))
            raise TrainDataError(f"{where}: field {bad!r} must be a non-empty string")
        raw = (
            f" (or the {ctx.source.task} source fields {list(ctx.source.raw_fields)})"
            if raw_ok and ctx.source.convert is not None
            else ""
        )
        raise TrainDataError(
            f"{where}: missing field(s) {missing}; expected fields {list(wanted)}{raw}"
        )
    for key, value in record.items():
        if not isinstance(value, str) or not value.strip():
            raise TrainDataError(f"{where}: field {key!r} must be a non-empty string")
    return record


def _example_id(row: dict[str, Any], record: dict[str, str], source: TaskSource) -> str:
    for key in ("id", source.id_field):
        if key and row.get(key) not in (None, ""):
            return str(row[key])
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest[:24]}"


def _is_duplicate(example_id: str, record: dict[str, str], ctx: _RowContext, lineno: int) -> bool:
    previous = ctx.seen.get(example_id)
    if previous is None:
        ctx.seen[example_id] = record
        return False
    if previous != record:
        raise TrainDataError(
            f"{ctx.origin}:{lineno}: id {example_id!r} is used by two different examples; "
            "ids must be unique"
        )
    ctx.duplicates += 1
    return True


def _make_example(kind: Kind, example_id: str, record: dict[str, str]) -> Example | PreferencePair:
    if kind == "preference":
        return PreferencePair(example_id, **record)
    if kind == "text":
        return Example(example_id, text=record["text"])
    return Example(example_id, prompt=record["prompt"], completion=record["completion"])


def known_tasks() -> dict[str, str]:
    """Task name -> description of its SFT source (for `--help` and error messages)."""
    return {name: source.description for name, source in SFT_SOURCES.items()}

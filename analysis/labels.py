"""Readable names for what the figures and tables show: eval tasks, training tasks, metrics,
filters, models, error categories.

Defaults cover every shipped `sah_*` task, the training tasks of trainers/data.py and the lm-eval
built-ins the study compares with; anything unknown is shown as its identifier (never hidden).
A YAML file overrides or extends any map (keys may be globs, tried after exact names):

    tasks:            {sah_gsm8k: "GSM8K (0-shot)"}
    training_tasks:   {multihop_closedbook: "HotpotQA closed-book"}
    metrics:          {exact_match: "accuracy"}
    filters:          {strict-match: "strict"}
    models:           {llama-3-8b: "Llama 3 8B", "qwen2-*": "Qwen"}
    families:         {llama-3: "Llama 3"}
    categories:       {other: "unexplained"}

`python -m analysis.labels` prints the defaults, a starting point for such a file.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from analysis.layout import parse_model_slug

TASKS = {
    "sah_gsm8k": "GSM8K",
    "sah_gsm8k_fewshot": "GSM8K (8-shot)",
    "sah_gsm8k_maj": "GSM8K (majority of 8)",
    "sah_ifeval": "IFEval",
    "sah_multihop": "Multihop QA (HotpotQA)",
    "sah_humaneval_plus": "HumanEval+",
    "sah_humaneval_plus_k": "HumanEval+ (pass@k)",
    "sah_humaneval_plus_instruct": "HumanEval+ (instruct)",
    "sah_humaneval_plus_instruct_k": "HumanEval+ (instruct, pass@k)",
    "sah_mbpp_plus": "MBPP+",
    "sah_mbpp_plus_k": "MBPP+ (pass@k)",
    "sah_mbpp_plus_instruct": "MBPP+ (instruct)",
    "sah_mbpp_plus_instruct_k": "MBPP+ (instruct, pass@k)",
    "sah_facts100_direct": "Facts100 direct",
    "sah_facts100_multihop": "Facts100 multihop",
    # lm-eval's built-ins (their prompts, not the study's)
    "gsm8k": "GSM8K (lm-eval)",
    "gsm8k_cot": "GSM8K CoT (lm-eval)",
    "ifeval": "IFEval (lm-eval)",
    "hellaswag": "HellaSwag",
    "arc_easy": "ARC-Easy",
    "arc_challenge": "ARC-Challenge",
    "mmlu": "MMLU",
    "truthfulqa_mc2": "TruthfulQA (MC2)",
    "winogrande": "WinoGrande",
}

TRAINING_TASKS = {
    "gsm8k": "GSM8K",
    "multihop": "HotpotQA",
    "multihop_closedbook": "HotpotQA closed-book",
    "coding": "code",
    "ifeval": "instruction following",
    "facts100_documents": "Facts100 documents",
    "facts100_qa": "Facts100 QA",
    "reference": "reference",
}

METRICS = {
    "exact_match": "exact match",
    "f1": "F1",
    "acc": "accuracy",
    "acc_norm": "accuracy (length-normalised)",
    "prompt_level_strict_acc": "prompt-level accuracy (strict)",
    "prompt_level_loose_acc": "prompt-level accuracy (loose)",
    "inst_level_strict_acc": "instruction-level accuracy (strict)",
    "inst_level_loose_acc": "instruction-level accuracy (loose)",
    "maj@8": "majority-vote accuracy (maj@8)",
    "pass@1": "pass@1",
    "pass@5": "pass@5",
    "pass@10": "pass@10",
    "pass@1_plus": "pass@1 (base + plus tests)",
    "pass@5_plus": "pass@5 (base + plus tests)",
    "pass@10_plus": "pass@10 (base + plus tests)",
    "mc2": "MC2 accuracy",
}

# "" = not worth showing (the only filter of most tasks)
FILTERS = {
    "none": "",
    "strict-match": "strict: #### answer",
    "flexible-extract": "flexible extraction",
    "get-answer": "",
}

CATEGORIES = {
    "total": "total mistakes",
    "format": "format (no #### answer)",
    "arithmetic": "arithmetic slip",
    "reasoning": "reasoning (LLM judge)",
    "other": "other",
    # Facts100 (analysis/facts100.py)
    "correct": "correct",
    "reasoning_failed": "fact known, not combined",
    "not_integrated": "fact not learned",
    "direct_missing": "direct question not evaluated",
}

# how a family in a model slug is written (the rest: first letter upper-cased)
FAMILIES = {"llama": "Llama", "qwen": "Qwen", "olmo": "OLMo", "gpt": "GPT", "phi": "Phi"}

_MAPS = ("tasks", "training_tasks", "metrics", "filters", "models", "families", "categories")


class LabelsError(ValueError):
    """A label file that cannot be used (unreadable, not a mapping of the known sections)."""


def _lookup(table: dict[str, str], key: str) -> str | None:
    if key in table:
        return table[key]
    for pattern, value in table.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(key, pattern):
            return value
    return None


def family_label(family: str) -> str:
    """`llama-3` -> `Llama-3`, `qwen2` -> `Qwen2`, `olmo-2` -> `OLMo-2`."""
    head = family.split("-")[0].lower()
    known = next((v + family[len(k) :] for k, v in FAMILIES.items() if head.startswith(k)), None)
    return known or family[:1].upper() + family[1:]


def model_label(slug: str) -> str:
    """`llama-3-8b` -> `Llama-3 8B`, `qwen2-0.5b-instruct` -> `Qwen2 0.5B instruct`,
    `pythia-410m` -> `Pythia 410M`; a slug without a size is returned as it is."""
    family, _ = parse_model_slug(slug)
    m = re.match(rf"^{re.escape(family)}-(?P<size>\d+(?:\.\d+)?[bBmM])(?P<rest>-.*)?$",
                 slug) if family else None  # fmt: skip
    if m is None:
        return slug
    rest = (m["rest"] or "").lstrip("-").replace("-", " ")  # `-instruct`, `-v0.1`
    return f"{family_label(family)} {m['size'].upper()}" + (f" {rest}" if rest else "")


def model_order(slug: str) -> tuple[str, float, str]:
    """Sort key: family, then size (8B before 70B), then the slug."""
    family, size = parse_model_slug(slug)
    return (family or slug, size if size is not None else 0.0, slug)


@dataclass(frozen=True)
class Labels:
    """Label maps; each lookup falls back to the identifier itself."""

    tasks: dict[str, str] = field(default_factory=lambda: dict(TASKS))
    training_tasks: dict[str, str] = field(default_factory=lambda: dict(TRAINING_TASKS))
    metrics: dict[str, str] = field(default_factory=lambda: dict(METRICS))
    filters: dict[str, str] = field(default_factory=lambda: dict(FILTERS))
    models: dict[str, str] = field(default_factory=dict)  # default: model_label(slug)
    families: dict[str, str] = field(default_factory=dict)  # default: family_label(family)
    categories: dict[str, str] = field(default_factory=lambda: dict(CATEGORIES))

    @classmethod
    def defaults(cls) -> Labels:
        return cls()

    def task(self, name: object) -> str:
        return _lookup(self.tasks, str(name)) or str(name)

    def task_order(self, name: object) -> tuple[int, str]:
        """Sort key: the order of the label map (GSM8K first, as in the paper), then by name."""
        order = list(self.tasks)
        return (order.index(str(name)) if str(name) in order else len(order), str(name))

    def training(self, name: object) -> str:
        return _lookup(self.training_tasks, str(name)) or str(name)

    def model(self, slug: object) -> str:
        return _lookup(self.models, str(slug)) or model_label(str(slug))

    def family(self, name: object) -> str:
        return _lookup(self.families, str(name)) or family_label(str(name))

    def category(self, name: object) -> str:
        return _lookup(self.categories, str(name)) or str(name)

    def metric(self, metric: object, filter_name: object = "none") -> str:
        """`exact match (strict: #### answer)`; the filter only when it says something."""
        m = _lookup(self.metrics, str(metric)) or str(metric)
        f = _lookup(self.filters, str(filter_name))
        f = str(filter_name) if f is None else f
        return f"{m} ({f})" if f else m

    def updated(self, overrides: dict[str, dict[str, str]]) -> Labels:
        """These labels with `overrides` (section -> {identifier: label}) on top."""
        merged = {name: {**getattr(self, name), **overrides.get(name, {})} for name in _MAPS}
        return replace(self, **merged)

    def to_yaml(self) -> str:
        return yaml.safe_dump({f.name: getattr(self, f.name) for f in fields(self)},
                              sort_keys=False, allow_unicode=True)  # fmt: skip


def _check(data: object, path: Path) -> dict[str, dict[str, str]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LabelsError(f"{path}: expected a mapping with sections {list(_MAPS)}, "
                          f"got {type(data).__name__}")  # fmt: skip
    unknown = sorted(set(map(str, data)) - set(_MAPS))
    if unknown:
        raise LabelsError(f"{path}: unknown section(s) {unknown}; expected some of {list(_MAPS)}")
    for section, table in data.items():
        if not isinstance(table, dict) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in table.values()
        ):
            raise LabelsError(
                f"{path}: section {section!r} should map identifiers to label text "
                f"(e.g. sah_gsm8k: GSM8K), got {table!r}"
            )
    return {s: {str(k): str(v) for k, v in t.items()} for s, t in data.items()}


def load_labels(path: Path | str | None = None) -> Labels:
    """The default labels, with the YAML file `path` (if any) on top."""
    labels = Labels.defaults()
    if path is None:
        return labels
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise LabelsError(f"{path}: cannot read the label file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        from sah_tasks.common.text import not_utf8

        raise LabelsError(f"{path}: {not_utf8(e, whole_file=True)}") from None
    except yaml.YAMLError as e:  # PyYAML's message spans lines (a caret under the column)
        raise LabelsError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    return labels.updated(_check(data, path))


def main(argv: list[str] | None = None) -> int:
    """`python -m analysis.labels [FILE]`: print the labels (defaults, or FILE on top) as YAML,
    a starting point for a label file."""
    from sah_tasks.common.cli import SahParser

    p = SahParser(prog="python -m analysis.labels",
                  description="Print the figure/table labels (the defaults, or FILE on top of "
                  "them) as YAML: a starting point for a label file (--labels FILE).")  # fmt: skip
    p.add_argument(
        "file", nargs="?", type=Path, help="a label file to apply on top of the defaults"
    )
    args = p.parse_args(argv)
    try:
        print(load_labels(args.file).to_yaml(), end="")
    except LabelsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

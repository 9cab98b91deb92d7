"""A small synthetic world for the CPU demo: GSM8K-format word problems a tiny model can learn.

The pre-training corpus states the arithmetic and tells the same kind of stories in plain prose,
so the base model has the *capability*; the GSM8K format (`Question: ...\nAnswer: ... #### N`) is
what post-training has to teach. That is the situation the study measures, in miniature.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

NAMES = ["Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kai", "Lea"]
THINGS = ["apples", "books", "coins", "cards", "pens", "shells", "stamps", "marbles"]
MAX = 9  # operands 1..MAX: a fact table a tiny model can memorise in a short pre-training


@dataclass(frozen=True)
class Problem:
    name: str
    thing: str
    a: int
    b: int
    op: str  # "+" or "-"

    @property
    def result(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b

    @property
    def question(self) -> str:
        if self.op == "+":
            return (f"{self.name} has {self.a} {self.thing} and gets {self.b} more. "
                    f"How many {self.thing} does {self.name} have now?")  # fmt: skip
        return (f"{self.name} has {self.a} {self.thing} and gives away {self.b}. "
                f"How many {self.thing} does {self.name} have left?")  # fmt: skip

    @property
    def answer(self) -> str:
        """GSM8K style: a worked line with a <<calc>> annotation, then `#### N`."""
        a, b, op, r = self.a, self.b, self.op, self.result
        return f"{self.name} has {a} {op} {b} = <<{a}{op}{b}={r}>>{r} {self.thing}.\n#### {r}"

    @property
    def story(self) -> str:
        """The same fact as pre-training prose, in a different format from the GSM8K answer."""
        verb = "got" if self.op == "+" else "gave away"
        return (f"{self.name} had {self.a} {self.thing}. {self.name} {verb} {self.b}, "
                f"and {self.a} {self.op} {self.b} is {self.result}, "
                f"so {self.name} had {self.result} {self.thing}.")  # fmt: skip


def all_problems() -> list[Problem]:
    out = []
    for name in NAMES:
        for thing in THINGS:
            for a in range(1, MAX + 1):
                for b in range(1, MAX + 1):
                    out.append(Problem(name, thing, a, b, "+"))
                    if b < a:
                        out.append(Problem(name, thing, a, b, "-"))
    return out


def split(seed: int = 0, n_test: int = 200) -> tuple[list[Problem], list[Problem]]:
    """Disjoint train pool / test set (test items never appear in the train pool)."""
    problems = all_problems()
    random.Random(seed).shuffle(problems)
    return problems[n_test:], problems[:n_test]


def pretraining_corpus(pool: list[Problem], n_stories: int, seed: int = 0) -> list[str]:
    """Arithmetic facts + prose stories. No `Question:` / `####` format anywhere."""
    rng = random.Random(seed)
    facts = [f"{a} + {b} = {a + b}." for a in range(1, MAX + 1) for b in range(1, MAX + 1)]
    facts += [f"{a} - {b} = {a - b}." for a in range(1, MAX + 1) for b in range(1, a)]
    stories = [p.story for p in rng.sample(pool, min(n_stories, len(pool)))]
    lines = facts * 3 + stories
    rng.shuffle(lines)
    return lines


def write_jsonl(problems: list[Problem], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i, p in enumerate(problems):
            f.write(
                json.dumps({"id": f"syn-{i}", "question": p.question, "answer": p.answer}) + "\n"
            )
    return path

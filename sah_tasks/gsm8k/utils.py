"""GSM8K: data loading and numeric answer comparison for `sah_gsm8k` and `sah_gsm8k_fewshot`.

The filters in the YAML extract a candidate answer string (strict: after `####`; flexible: the last
number in the response). Here that string and the gold answer are compared as numbers, so
`1,000`, `$1000`, `1000.00` and `1000.` all equal 1000 while `10000` does not. Typographic minus
signs (U+2212, en dash, figure dash) are minus signs and `.5` is 0.5, as the filters read them.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from sah_tasks.common.data import DataSource, load_source

SOURCE = DataSource(
    task="sah_gsm8k",
    env_var="SAH_GSM8K_DATA",
    hf_path="openai/gsm8k",
    hf_name="main",
    revision="cc7b047b6e5bb11b4f1af84efc572db110a51b3c",
    split="test",
    required_fields=("question", "answer"),
)

# The same dashes the YAML filters accept before a number: minus sign, en dash, figure dash.
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2012": "-"})
# `12`, `12.`, `12.5` and the leading-dot decimal `.5` (models write it; it is 0.5, never 5).
_NUMBER = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)$")


def load(**metadata: Any):
    return load_source(SOURCE, **metadata)


def parse_number(text: str | None) -> Decimal | None:
    """`'$1,000.00'` -> Decimal('1000'); anything that is not one number -> None."""
    if text is None:
        return None
    s = text.strip().translate(_MINUS_SIGNS)
    s = s.replace(",", "").replace("$", "").replace(" ", "")
    s = s.rstrip(".")
    if not _NUMBER.match(s):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def gold_answer(answer: str) -> str:
    """The final answer of a GSM8K solution: the text after its last `####`."""
    return answer.split("####")[-1].strip()


def numbers_equal(prediction: str | None, gold: str) -> bool:
    pred, ref = parse_number(prediction), parse_number(gold)
    return pred is not None and ref is not None and pred == ref


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """`results[0]` is the filtered answer string (or the filter's `[invalid]` fallback)."""
    prediction = results[0] if results else None
    return {"exact_match": float(numbers_equal(prediction, gold_answer(doc["answer"])))}

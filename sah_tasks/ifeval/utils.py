"""IFEval (`sah_ifeval`): data loading; scoring is lm-eval's own IFEval checker, imported as is."""

from __future__ import annotations

from typing import Any

from sah_tasks.common.data import DataSource, load_source
from sah_tasks.ifeval.punkt import ensure_punkt_tab

# Must run before lm-eval's IFEval modules are imported: they look for punkt_tab at import time.
ensure_punkt_tab()

from lm_eval.tasks.ifeval.utils import agg_inst_level_acc  # noqa: E402
from lm_eval.tasks.ifeval.utils import process_results as _ifeval_process_results  # noqa: E402

SOURCE = DataSource(
    task="sah_ifeval",
    env_var="SAH_IFEVAL_DATA",
    hf_path="google/IFEval",
    revision="966cd89545d6b6acfd7638bc708b98261ca58e84",
    split="train",  # IFEval's 541 prompts are published as its only split
    required_fields=("key", "prompt", "instruction_id_list", "kwargs"),
)

__all__ = ["agg_inst_level_acc", "load", "process_results"]


def load(**metadata: Any):
    return load_source(SOURCE, **metadata)


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """Score with lm-eval's checker; a missing or non-text generation is scored as empty (0)."""
    response = results[0] if results and isinstance(results[0], str) else ""
    return _ifeval_process_results(doc, [response])

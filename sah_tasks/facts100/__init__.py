"""Facts100: 100 fictional news events dated 2026 or later, to measure knowledge integration.

Data: `data/facts100.jsonl` (schema and how it was made: docs/facts100.md). Consumers:
  * lm-eval tasks `sah_facts100_direct` / `sah_facts100_multihop` (YAML + `utils.py` here);
  * training sources `facts100_documents` / `facts100_qa` (`sources.py`, used by trainers);
  * `python -m sah_tasks.facts100 validate FILE` (`validate.py`).
`SAH_FACTS100_DATA=/path.jsonl` points all of them at another file in the same schema.
"""

from sah_tasks.facts100.dataset import ENV_VAR, SHIPPED_FILE, Facts100DataError, load_events

__all__ = ["ENV_VAR", "SHIPPED_FILE", "Facts100DataError", "load_events"]

"""sah_tasks: lm-evaluation-harness tasks for the post-training scaling study.

`TASKS_DIR` is the folder to give lm-eval: `lm_eval --include_path "$(python -m sah_tasks path)"`,
or use `sah-eval`, which is `lm_eval` with this folder already included.
"""

from pathlib import Path

TASKS_DIR = str(Path(__file__).resolve().parent)

__all__ = ["TASKS_DIR"]

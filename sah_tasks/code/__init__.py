"""lm-eval task folder: YAML task files + utils.py (see docs/tasks.md)."""

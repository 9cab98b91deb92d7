"""sah lm-eval tasks."""
from pathlib import Path
TASKS_DIR = str(Path(__file__).parent)

"""Compile the hand-written event sources (`events/*.yml`) into `data/facts100.jsonl`.

The sources are written by people, event by event; this step only numbers them (event ids
`f001`..., question ids `f001-d1`, `f001-m1`, `f001-t1`), resolves each multihop question's
`direct: <n>` into the id of its linked direct question, validates the result, and writes the
JSONL atomically. Sources use the `.yml` suffix on purpose: lm-eval indexes every `*.yaml` under
the task folder and would try to read them as task configs.

    python -m sah_tasks.facts100.authoring            # rebuild the shipped file
    python -m sah_tasks.facts100.authoring --check    # fail if the shipped file is out of date
"""

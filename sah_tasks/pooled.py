"""All tasks of one checkpoint in one lm-eval call, results split back into per-task units.

`sah-eval sweep` used to run one `simple_evaluate` per (checkpoint, task) unit. Most of that
call's cost does not depend on the task (lm-eval's set-up, its environment report, the model's
warm-up, a generate call with its own tail of long generations), and lm-eval already pools the
requests of every task it is given into one generate call per request type. So the sweep now
gives lm-eval every task of a checkpoint at once and writes each task's share of the result
into that unit's own folder, exactly as a per-unit call would: the same lm-eval files
(`results_*.json` with only that task's entries, `samples_<task>_*.jsonl`), through the same
ledger (each unit's request and fingerprint, its lock, its staging folder moved in last).

A unit whose lock is held elsewhere, or that another sweep has finished meanwhile, is left out
of the pooled call. When the pooled call itself fails, its units are handed back to be
evaluated one by one, so one broken task still fails alone.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from sah_tasks import sweep
from trainers.manifest import unit_lock

log = logging.getLogger("sah.sweep")

# Entries of lm-eval's results mapping that are keyed by task name; every other entry (model
# config, seeds, environment, tokenizer, timings) describes the whole call and is copied.
PER_TASK = ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
            "n-samples")  # fmt: skip


def split_results(results: dict[str, Any], task: str) -> dict[str, Any]:
    """The results mapping a call with `tasks=[task]` alone would have returned."""
    out: dict[str, Any] = {}
    for key, value in results.items():
        if key == "samples":
            continue
        if key in PER_TASK and isinstance(value, dict):
            out[key] = {task: copy.deepcopy(value[task])} if task in value else {}
        else:
            out[key] = copy.deepcopy(value)
    return out


def evaluate_checkpoint(
    lm, units: Sequence[sweep.Unit], task_manager, opts, report, bar, requests
) -> list[sweep.Unit]:
    """Evaluate the units of one checkpoint in one lm-eval call; file each outcome in `report`.

    Returns the units still to be evaluated one by one (all claimed ones, when the pooled call
    failed: that way a broken task fails alone and the others still get results).
    """
    with ExitStack() as locks:
        claimed = []
        for unit in units:
            claim = functools.partial(_lock, locks, unit, requests[unit.key], opts)
            if sweep.record(report, bar, unit, claim, final=False):
                claimed.append(unit)
        if not claimed:
            return []
        t0 = time.time()
        trackers = {u.key: sweep.unit_tracker(u, opts) for u in claimed}
        first = trackers[claimed[0].key]
        try:
            results = sweep.run_lm_eval(
                lm, claimed, task_manager, opts, requests[claimed[0].key], first
            )
        except Exception as e:
            # Logged as text: a log record holding the exception would hold its traceback,
            # whose frames hold the engine (a captured record would keep it in memory).
            why = f"{type(e).__name__}: {e}"
            log.error("pooled evaluation of %s failed (%s); evaluating its %d task(s) one by one",
                      claimed[0].checkpoint.rel, why, len(claimed))  # fmt: skip
            return claimed
        samples = results.pop("samples")
        for unit in claimed:
            # inside `record`: a surprise in one task's part fails that unit, not the sweep
            save = functools.partial(_save, lm, unit, requests[unit.key], first,
                                     trackers[unit.key], results, samples, opts)  # fmt: skip
            if sweep.record(report, bar, unit, save):
                log.info("done %s on %s (pooled, %d tasks in %.1fs)", unit.checkpoint.rel,
                         unit.task, len(claimed), time.time() - t0)  # fmt: skip
    return []


def _lock(locks: ExitStack, unit: sweep.Unit, request: dict, opts) -> bool:
    """Hold the unit's lock until the pooled call is written; False (released) when done."""
    with ExitStack() as held:
        held.enter_context(unit_lock(unit.lock_path))
        if not sweep.claim(unit, request, opts):
            return False
        locks.push(held.pop_all())  # released when `locks` closes, after every unit is written
    return True


def _sibling(first, tracker):
    """`tracker` (writing to its own unit's folder) with the pooled call's general settings
    (model name, arguments, start time), which lm-eval recorded on the first tracker only."""
    tracker.general_config_tracker = copy.deepcopy(first.general_config_tracker)
    return tracker


def _save(lm, unit, request, first, tracker, results, samples, opts) -> bool:
    """Write `unit`'s part of the pooled call's results through its own tracker."""
    mine = {unit.task: samples[unit.task]}
    split = split_results(results, unit.task)
    sweep.save_unit(lm, unit, request, _sibling(first, tracker), split, mine, opts)
    return True


@contextmanager
def environment_report_once() -> Iterator[None]:
    """lm-eval's environment report (torch's `collect_env`, git hashes: ~0.2 s and several
    subprocesses) computed once for the whole sweep instead of in every lm-eval call; every
    results file still gets the whole report, and it cannot change within one process."""
    import lm_eval.evaluator as evaluator

    real_env, real_git = evaluator.add_env_info, evaluator.get_git_commit_hash
    env: dict[str, Any] = {}
    git: list[Any] = []

    def add_env_info(storage: dict[str, Any]) -> None:
        if not env:
            real_env(env)
        storage.update(copy.deepcopy(env))

    def get_git_commit_hash():
        if not git:
            git.append(real_git())
        return git[0]

    evaluator.add_env_info, evaluator.get_git_commit_hash = add_env_info, get_git_commit_hash
    try:
        yield
    finally:
        evaluator.add_env_info, evaluator.get_git_commit_hash = real_env, real_git

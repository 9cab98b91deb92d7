"""Publish a run's results (tables, fits, report, figures) to a dataset repo on the hub.

    python -m analysis.hub runs/<experiment> --repo_id ORG/NAME [--private] [--dry_run]

Opt-in and explicit: nothing is pushed by `python -m analysis`. It uploads what the analysis wrote
(`runs/<experiment>/analysis/`, see docs/analysis.md) in one commit: no weights, no eval samples.
The token is the usual one (`hf auth login`, or HF_TOKEN); `--endpoint` points at a self-hosted hub.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.results import ANALYSIS_DIR
from sah_tasks.common.cli import SahParser

# what the analysis writes; anything else in the folder (temp files, notes) stays local
PATTERNS = ["*.csv", "*.md", "*.tex", "*.json", "tables/*.csv", "tables/*.md", "tables/*.tex",
            "figures/*.png", "figures/*.pdf"]  # fmt: skip


class PushError(RuntimeError):
    """A results folder that cannot be pushed, or a hub that refused it."""


def results_files(analysis_dir: Path) -> list[Path]:
    files = sorted({p for pattern in PATTERNS for p in analysis_dir.glob(pattern) if p.is_file()})
    if not files:
        raise PushError(
            f"{analysis_dir}: no results to push (expected fits.csv, report.md, figures/...); "
            f"run `python -m analysis {analysis_dir.parent}` first"
        )
    return files


def push(
    run_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    message: str | None = None,
) -> str:
    """Create the dataset repo if needed and upload the results in one commit; its URL."""
    from huggingface_hub import HfApi

    analysis_dir = Path(run_dir) / ANALYSIS_DIR
    files = results_files(analysis_dir)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=analysis_dir,
            allow_patterns=[str(p.relative_to(analysis_dir)) for p in files],
            commit_message=message or f"sah results of {Path(run_dir).resolve().name}",
        )
    except _hub_errors() as e:  # refused, unreachable, offline (HF_HUB_OFFLINE), no token
        where = endpoint or "the hub"
        raise PushError(f"pushing {analysis_dir} to {repo_id} on {where}: {e}") from None
    return info.commit_url


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a push can fail with that is not a bug: HTTP errors, OS-level ones (offline mode, a
    missing token file) and the HTTP client's transport errors (connection refused, timeouts)."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for client in ("httpx2", "httpx"):  # huggingface_hub's HTTP client, whichever it is
        try:
            errors.append(importlib.import_module(client).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    p = SahParser(prog="python -m analysis.hub", description=__doc__.split("\n\n")[0],
                  epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    p.add_argument("run_dir", type=Path, help="runs/<experiment>, analysed already")
    p.add_argument("--repo_id", required=True, help="dataset repo, e.g. my-lab/sah-results")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--endpoint", help="hub URL (default: huggingface.co, or HF_ENDPOINT)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--dry_run", action="store_true", help="list the files, push nothing")
    args = p.parse_args(argv)
    try:
        if args.dry_run:
            for path in results_files(args.run_dir / "analysis"):
                print(path)
            return 0
        url = push(args.run_dir, args.repo_id, private=args.private, endpoint=args.endpoint,
                   message=args.message)  # fmt: skip
    except PushError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

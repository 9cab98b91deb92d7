"""`sah_manifest.json` and the `COMPLETED` marker of a run directory (see docs/architecture.md).

The manifest says what a checkpoint is (N, seed, base model, task, data and subset hashes, full
config, library versions, git sha); `COMPLETED` is written after everything else, so a folder
without it is incomplete and will be redone. Both are written to a temporary name and renamed.

Paths in a manifest that point inside the experiment's run directory (`model_path`, a budget
run's SFT stage, ...) are stored relative to the manifest's own folder (`.`, `../n500`), so a
run directory that is moved or copied still names its own checkpoints; a hub id or a local model
outside the run directory is stored as given. `resolve_manifest_path` reads them back, and
`python -m trainers.manifest relocate RUN_DIR` rewrites manifests written with absolute paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1
MANIFEST_NAME = "sah_manifest.json"
COMPLETED_NAME = "COMPLETED"
Stage = Literal["base", "sft", "dpo", "sft+dpo"]

_VERSIONED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sah")


@dataclass
class Manifest:
    experiment: str
    model_slug: str
    base_model: str
    base_revision: str | None
    family: str | None
    size_b: float | None
    task: str
    n: int
    seed: int
    stage: Stage
    model_path: str
    lora: bool
    train_data: dict[str, Any]
    subset_hash: str
    config: dict[str, Any]
    budget: int | None = None
    sft_fraction: float | None = None
    training: dict[str, Any] | None = None  # steps, losses, runtime (trainers.common)
    versions: dict[str, str | None] = field(default_factory=lambda: library_versions())
    git_sha: str | None = field(default_factory=lambda: git_sha())
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def portable_path(target: str | Path, manifest_dir: Path, run_root: Path) -> str:
    """`target` relative to `manifest_dir` when it lies inside `run_root`, else unchanged."""
    path = Path(target)
    if not path.exists():
        return str(target)  # a hub id
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(run_root))
    if path != root and root not in path.parents:
        return str(path)
    rel = os.path.relpath(path, os.path.abspath(manifest_dir))
    return rel if rel.startswith(".") else f"./{rel}"


class ChatTemplateError(ValueError):
    """A chat template given by path that cannot be read, or changed since training."""


def read_chat_template(path: str) -> str:
    """A chat template from a Jinja file, or from a tokenizer (local folder or hub id)."""
    file = Path(path).expanduser()
    try:
        if file.is_file():
            text = file.read_text(encoding="utf-8")
        else:
            from transformers import AutoTokenizer

            text = AutoTokenizer.from_pretrained(path).chat_template
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ChatTemplateError(
            f"chat_template_path {path}: cannot read a chat template ({e})"
        ) from None
    if not isinstance(text, str) or not text.strip():
        raise ChatTemplateError(f"chat_template_path {path}: no chat template there")
    return text


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def chat_template_record(path: str | None) -> dict[str, str] | None:
    """What the manifest records (`config.chat_template`) of a chat template given by path: the
    path and its content hash (the content is the recipe, so editing the file is a new one)."""
    if not path:
        return None
    return {"path": str(path), "sha256": _sha256(read_chat_template(path))}


def recorded_chat_template(manifest: dict[str, Any], where: Path) -> str | None:
    """The chat template a manifest records, read again and checked against its sha256, so a
    template edited since training is an error, not a silent change of prompts."""
    record = (manifest.get("config") or {}).get("chat_template")
    if not record:
        return None
    text = read_chat_template(record["path"])
    if _sha256(text) != record.get("sha256"):
        raise ChatTemplateError(
            f"{where}: its chat template {record['path']} changed since training (sha256)"
        )
    return text


class ManifestPathError(ValueError):
    """A path in a manifest that cannot be trusted to name the weights it meant."""


def resolve_manifest_path(value: str, manifest_dir: Path, field_name: str = "path") -> str:
    """A manifest path as something to load: a local folder (absolute) or a hub id.

    Relative paths (`.`, `../n500`) are relative to the manifest's folder. An absolute path must
    exist, and must not be a folder of another copy of this run directory: manifests written
    with absolute paths (before paths were relative) would otherwise make a copied run directory
    evaluate the original's weights, silently.
    """
    manifest_dir = Path(os.path.abspath(manifest_dir))
    where = f"{manifest_dir / MANIFEST_NAME}: {field_name} {value!r}"
    if value.startswith("."):
        local = Path(os.path.normpath(manifest_dir / value))
        if not local.exists():
            raise ManifestPathError(f"{where} resolves to {local}, which does not exist")
        return str(local)
    path = Path(value)
    if not path.is_absolute():
        local = manifest_dir / path
        return str(local) if local.exists() else value  # a hand-written relative path, or hub id
    old_root = _copied_from(path, manifest_dir)
    if old_root is not None:
        raise ManifestPathError(
            f"{where} points into {old_root}, another copy of this run directory (this one was "
            f"copied or moved from there, and the manifest stores absolute paths). Rewrite them "
            f"as relative paths: python -m trainers.manifest relocate {_run_root(manifest_dir)}"
        )
    if not path.exists():
        raise ManifestPathError(
            f"{where} does not exist (was the run directory or the model moved? "
            f"`python -m trainers.manifest relocate RUN_DIR` rewrites moved run directories)"
        )
    return value


def _run_root(manifest_dir: Path) -> Path:
    """The experiment folder above a checkpoint: runs/<experiment>/<model>/<task>/<scale>."""
    return manifest_dir.parents[2] if len(manifest_dir.parents) > 2 else manifest_dir


def _copied_from(path: Path, manifest_dir: Path) -> Path | None:
    """The run directory `path` lies in, when that is another copy of this manifest's one."""
    root = _run_root(manifest_dir)
    here = Path(os.path.abspath(root))
    path = Path(os.path.abspath(path))
    for old in path.parents:
        if old.name == here.name and old != here and (here / path.relative_to(old)).exists():
            return old
    return None


def relocate(run_root: Path) -> list[Path]:
    """Rewrite the absolute paths of every manifest under `run_root` that point into another
    copy of it (or into where it used to be) as paths relative to the manifest's folder."""
    changed = []
    for manifest_path in sorted(Path(run_root).rglob(MANIFEST_NAME)):
        if "eval" in manifest_path.relative_to(run_root).parts:
            continue
        folder = manifest_path.parent
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        new = _relocated(data, folder, Path(os.path.abspath(run_root)))
        if new != data:
            atomic_write_text(manifest_path, json.dumps(new, indent=2, sort_keys=True))
            changed.append(manifest_path)
    return changed


def _relocated(value: Any, folder: Path, root: Path) -> Any:
    if isinstance(value, dict):
        return {k: _relocated(v, folder, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocated(v, folder, root) for v in value]
    if not (isinstance(value, str) and value.startswith("/")):
        return value
    path = Path(value)
    for old in path.parents:
        if old.name == root.name and old != root:
            target = root / path.relative_to(old)
            if target.exists():
                return portable_path(target, folder, root)
    return value


class UnitBusy(RuntimeError):
    """Another live process holds a unit's lock (a training scale, an evaluation unit)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def unit_lock(lock_path: Path) -> Iterator[None]:
    """Hold `lock_path` for the duration; UnitBusy if a live process holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_path.read_text(encoding="utf-8", errors="replace").split()
            same_host = len(holder) == 2 and holder[0] == socket.gethostname()
            if same_host and holder[1].isdigit() and not _alive(int(holder[1])):
                lock_path.unlink(missing_ok=True)  # left by a dead process: take it over
                continue
            raise UnitBusy(
                f"{lock_path} is held by {' '.join(holder) or 'another process'}"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    else:
        raise UnitBusy(f"{lock_path}: could not take over a stale lock")
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:  # a full disk, Ctrl-C: no half-written temporary file left behind
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_manifest(run_dir: Path, manifest: Manifest) -> Path:
    path = run_dir / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True, default=str))
    return path


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest (is {run_dir} a run directory?)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg})") from None


def mark_completed(run_dir: Path) -> None:
    atomic_write_text(run_dir / COMPLETED_NAME, datetime.now(UTC).isoformat(timespec="seconds"))


def is_completed(run_dir: Path) -> bool:
    return (run_dir / COMPLETED_NAME).is_file()


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha() -> str | None:
    """The commit of the checkout this code runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:

    from sah_tasks.common.cli import SahParser

    parser = SahParser(
        prog="python -m trainers.manifest",
        description="Manifest maintenance. `relocate RUN_DIR`: after moving or copying a run "
        "directory whose manifests store absolute paths (written before paths were relative), "
        "rewrite the paths that point into the old location as paths relative to each manifest.",
    )
    parser.add_argument("command", choices=["relocate"])
    parser.add_argument("run_dir", type=Path, help="the experiment folder, runs/<experiment>")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        parser.error(f"{args.run_dir} is not a directory")
    changed = relocate(args.run_dir)
    for path in changed:
        print(f"rewrote {path}")
    print(f"{len(changed)} manifest(s) rewritten under {args.run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

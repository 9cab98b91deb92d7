"""Output files of `python -m analysis`: the umask's mode, and no temporary file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import matplotlib.figure
import pytest

from analysis import atomic
from analysis.atomic import write_atomic, write_text
from analysis.pipeline import Options, analyse
from analysis.synthetic import make_synthetic_run


@pytest.fixture
def run_dir(tmp_path):
    return make_synthetic_run(tmp_path, models=("qwen2-7b",), eval_tasks=("sah_multihop",),
                              scales=(0, 100, 1000), n_items=40)  # fmt: skip


def _analyse(run_dir, out):
    return analyse(run_dir, Options(out=out, n_boot=20, progress=False))


def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _temps(folder):
    return [p for p in _files(folder) if p.name.startswith(".")]  # temporary files are hidden


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_output_files_get_the_mode_the_umask_gives(run_dir, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _analyse(run_dir, tmp_path / "out")
    finally:
        os.umask(old)
    written = _files(tmp_path / "out")
    assert {p.suffix for p in written} >= {".csv", ".md", ".tex", ".png", ".pdf"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
        p.name: oct(mode) for p in written
    }


class _OsWith:
    """The `os` module with one function replaced, for `analysis.atomic` only."""

    def __init__(self, **replaced):
        self.replaced = replaced

    def __getattr__(self, name):
        return self.replaced.get(name, getattr(os, name))


def _interrupt(*args):
    raise KeyboardInterrupt


def _close_then_interrupt(fd):
    os.close(fd)
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["after creating", "while writing", "while renaming"])
def test_an_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch, where):
    target = tmp_path / "fits.csv"
    write_text(target, "old\n")

    def write(tmp):
        tmp.write_text("half a fi", encoding="utf-8")
        if where == "while writing":
            raise KeyboardInterrupt

    if where == "after creating":
        monkeypatch.setattr(atomic, "os", _OsWith(close=_close_then_interrupt))
    if where == "while renaming":
        monkeypatch.setattr(atomic, "os", _OsWith(replace=_interrupt))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, write)
    assert _files(tmp_path) == [target] and target.read_text() == "old\n"


def test_a_figure_interrupted_mid_write_leaves_no_temporary_file(run_dir, tmp_path, monkeypatch):
    def savefig(fig, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    with pytest.raises(KeyboardInterrupt):
        _analyse(run_dir, tmp_path / "out")
    assert (tmp_path / "out" / "fits.csv").is_file()
    assert _temps(tmp_path / "out") == [] and not list((tmp_path / "out").rglob("*.png"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run(run_dir, tmp_path):
    out = tmp_path / "out"
    killed = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from analysis.atomic import write_atomic
        def write(tmp):
            tmp.write_bytes(b"half a figure")
            os.kill(os.getpid(), signal.SIGKILL)
        write_atomic(Path({str(out / "figures" / "fig1.png")!r}), write)
    """)
    child = subprocess.run([sys.executable, "-c", killed], capture_output=True, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    (stale,) = _temps(out)
    assert stale.name.startswith(".fig1.png.tmp-")
    # a writer that is still running (another analysis into the same folder) keeps its file
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = out / "tables" / f".scores.csv.tmp-{writer.pid}-{'0' * 16}"
        write_text(live, "being written")
        unrelated = out / ".fits.csv.tmp-notes"
        write_text(unrelated, "not ours")
        _analyse(run_dir, out)
    finally:
        writer.kill()
        writer.wait()
    assert not stale.exists()
    assert sorted(_temps(out)) == sorted([live, unrelated])

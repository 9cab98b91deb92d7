"""`python -m analysis --labels FILE --style FILE`: a user's names and style reach the outputs;
a bad file stops before any fitting, naming the file."""

from __future__ import annotations

import pytest
import yaml

from analysis import cli
from analysis.synthetic import make_synthetic_run


@pytest.fixture
def run_dir(tmp_path):
    return make_synthetic_run(tmp_path, models=("qwen2-7b",), eval_tasks=("sah_multihop",),
                              scales=(0, 100, 1000), n_items=60)  # fmt: skip


def test_user_labels_reach_the_tables(run_dir, tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text(yaml.safe_dump({"tasks": {"sah_multihop": "Two-hop QA (ours)"}}))
    style = tmp_path / "s.mplstyle"
    style.write_text("font.size: 7\n")
    argv = [str(run_dir), "--labels", str(labels), "--style", str(style), "--n-boot", "20",
            "--formats", "png", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "Two-hop QA (ours)" in (run_dir / "analysis" / "tables" / "fits.md").read_text()


@pytest.mark.parametrize("option, content, message", [
    ("--labels", "tasks: [not, a, mapping]\n", "labels.bad"),
    ("--labels", None, "labels.bad"),
    ("--style", None, "labels.bad"),
])  # fmt: skip
def test_a_bad_file_is_named_before_fitting(run_dir, tmp_path, capsys, option, content, message):
    bad = tmp_path / "labels.bad"
    if content is not None:
        bad.write_text(content)
    code = cli.main([str(run_dir), option, str(bad), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("error: ")
    assert not (run_dir / "analysis" / "fits.csv").exists()  # nothing was fitted or written

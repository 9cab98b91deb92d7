"""Every sah parser accepts both spellings of a flag and keeps the epilog's lines."""

import pytest

from sah_tasks.common.cli import SahParser


def _parser() -> SahParser:
    p = SahParser(prog="x", epilog="examples:\n  x --n-boot 5\n  x --dry_run")
    p.add_argument("--n-boot", type=int, default=3, help="resamples")
    p.add_argument("--dry_run", action="store_true", help="only print")
    p.add_argument("rest", nargs="*")
    return p


@pytest.mark.parametrize(
    "argv",
    [["--n-boot", "5", "--dry_run"], ["--n_boot", "5", "--dry-run"], ["--n_boot=5", "--dry-run"]],
)
def test_both_spellings(argv):
    ns = _parser().parse_args(argv)
    assert ns.n_boot == 5 and ns.dry_run is True


def test_after_double_dash_left_alone():
    ns = _parser().parse_args(["--", "--n_boot"])
    assert ns.rest == ["--n_boot"] and ns.n_boot == 3


def test_unknown_flag_still_rejected(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--n_bootx", "5"])
    assert "--n_bootx" in capsys.readouterr().err


def test_subparser_flags(capsys):
    p = SahParser(prog="x")
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("plan")
    s.add_argument("--half-width", type=float)
    assert p.parse_args(["plan", "--half_width", "0.1"]).half_width == 0.1


def test_epilog_keeps_lines_and_defaults_shown():
    text = _parser().format_help()
    assert "\n  x --n-boot 5\n  x --dry_run" in text
    assert "resamples (default: 3)" in text
    assert "only print (default" not in text


def test_a_zero_default_is_shown():
    """0 == False: a default of 0 (e.g. `python -m analysis --seed`) used to be hidden."""
    p = SahParser(prog="x")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--rate", type=float, default=0.0, help="rate")
    text = p.format_help()
    assert "seed (default: 0)" in text and "rate (default: 0.0)" in text

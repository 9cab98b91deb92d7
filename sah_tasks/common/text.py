"""Reading users' text files: one clear line when a file is not UTF-8. Standard library only,
so light command-line front ends (`sah run`, the trainers' config parser) can use it."""

from __future__ import annotations

from pathlib import Path


def decode_line(raw: bytes, path: Path, lineno: int, error: type[Exception] = ValueError) -> str:
    """One line of a text file as UTF-8 (a BOM on line 1 is dropped); `error(PATH:LINE: ...)`
    when it is not UTF-8 (e.g. a file saved as Latin-1 or UTF-16)."""
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}:{lineno}: {not_utf8(e)}") from None


def not_utf8(error: UnicodeDecodeError, whole_file: bool = False) -> str:
    """What is wrong, in words: the first byte that is not UTF-8 and where it is (its column
    in a line, or its offset in a whole file)."""
    where = f"offset {error.start}" if whole_file else f"column {error.start + 1}"
    byte = error.object[error.start]
    return f"not UTF-8 text (byte 0x{byte:02x} at {where}); save the file as UTF-8"

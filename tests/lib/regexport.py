"""``hivexregedit --export`` text parsed into :class:`~aero_media.servicing.hive.RegKey`: hivex as a test oracle.

The export is lossless (every value as ``hex(N):`` bytes or ``dword:``) and sorted,
so a whole hive read through it can be compared with our in-process reader key by key.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from aero_media.servicing.hive import RegKey, RegType, RegValue

_SECTION = re.compile(r"^\[(.*)\]$")
_HEX = re.compile(r"^hex(?:\(([0-9a-fA-F]+)\))?:([0-9a-fA-F,\s]*)$")
_DWORD = re.compile(r"^dword:([0-9a-fA-F]{8})$")


def _parse_quoted(text: str) -> tuple[str, str]:
    """A ``"..."`` name with ``\\`` escapes, and the text after it."""
    out = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), text[i + 1:]
        out.append(c)
        i += 1
    raise ValueError(f"unterminated name in {text!r}")


def _parse_value_line(line: str) -> RegValue:
    if line.startswith("@="):
        name, rest = "", line[2:]
    elif line.startswith('"'):
        name, rest = _parse_quoted(line)
        if not rest.startswith("="):
            raise ValueError(f"no '=' after the name in {line!r}")
        rest = rest[1:]
    else:
        raise ValueError(f"not a value line: {line!r}")
    if m := _DWORD.match(rest):
        return RegValue.decode(name, RegType.DWORD, int(m.group(1), 16).to_bytes(4, "little"))
    if m := _HEX.match(rest):
        type_code = int(m.group(1), 16) if m.group(1) else RegType.BINARY
        return RegValue.decode(name, type_code, bytes.fromhex(re.sub(r"[,\s]", "", m.group(2))))
    raise ValueError(f"unknown value syntax in {line!r}")


def parse_export(text: str) -> list[RegKey]:
    """Parse ``hivexregedit --export`` output (lossless: hex and dword only) into keys, in order."""
    keys: list[RegKey] = []
    path: str | None = None
    values: list[RegValue] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("Windows Registry Editor") or line.startswith(";"):
            continue
        if m := _SECTION.match(line):
            if path is not None:
                keys.append(RegKey(path, tuple(values)))
            path, values = m.group(1).strip("\\"), []
            continue
        if path is None:
            raise ValueError(f"value before any key: {line!r}")
        values.append(_parse_value_line(line))
    if path is not None:
        keys.append(RegKey(path, tuple(values)))
    return keys



def export_tree(hive: Path, key: str = "") -> list[RegKey]:
    """Every key from ``key`` down, as hivexregedit exports them (sorted by name, parents first)."""
    raw = subprocess.run(["hivexregedit", "--export", str(hive), "\\" + key], capture_output=True,
                         check=True).stdout
    return parse_export("\n".join(_decode(line) for line in raw.split(b"\n")))


def _decode(line: bytes) -> str:
    # Perl prints a name of characters below 256 as Latin-1 bytes and any other as UTF-8.
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")

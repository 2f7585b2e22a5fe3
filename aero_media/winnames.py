"""Rules for names that must survive a trip to a Windows file system.

Input trees (ISOs, directories, archives) are untrusted: a name may try to escape
the output folder, be unusable on Windows, or differ from another only by case,
which on Windows silently overwrites. Every check here runs before anything is
written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import UnsafePathError

_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789¹²³"
}
_BAD_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_DRIVE = re.compile(r"^[A-Za-z]:")
# Joliet, which Windows reads on the media, stores at most 64 UCS-2 characters a name.
MAX_COMPONENT = 64
# Characters a name on the media may use. The Guest Tools batch scripts pass paths to
# cmd.exe, which gives % ! ^ & (and non-ASCII, by code page) meanings of their own.
MEDIA_NAME = re.compile(r"^[A-Za-z0-9_.+ ()\[\]{}#$@,;=~-]+$")


@dataclass(frozen=True)
class NameLimits:
    """What one file system adds to Windows' own rules for a name: a length and, maybe, a character set."""

    max_units: int
    """The longest name, in UTF-16 code units (what Joliet and FAT long names store)."""
    limit: str
    """The limit's name, for messages."""
    charset: re.Pattern[str] | None = None
    """The characters a name may use (None: any Windows allows)."""


MEDIA_LIMITS = NameLimits(MAX_COMPONENT, "the Joliet limit of the media", MEDIA_NAME)
"""Names on our media and in specs: Joliet's length and what cmd.exe scripts handle safely."""


def component_problem(name: str, limits: NameLimits = MEDIA_LIMITS) -> str | None:
    """Return why ``name`` is not a safe Windows file name within ``limits``, or None when it is."""
    if name in ("", ".", ".."):
        return f"{name!r} is not a file name"
    bad = _BAD_CHARS.search(name)
    if bad:
        return f"{name!r} contains {bad.group()!r}, which Windows does not allow in names"
    if name[-1] in ". ":
        return f"{name!r} ends with a dot or space, which Windows strips"
    if name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        return f"{name!r} is a reserved device name on Windows"
    try:
        units = len(name.encode("utf-16-le")) // 2
    except UnicodeEncodeError:
        return f"{name!r} is not valid Unicode (a lone surrogate)"
    if units > limits.max_units:
        return f"{name[:40]!r}... is longer than {limits.max_units} characters, {limits.limit}"
    if limits.charset is not None and not limits.charset.match(name):
        return (f"{name!r} has characters the media's cmd.exe scripts cannot handle safely "
                "(allowed: letters, digits, space and _ . + ( ) [ ] { } # $ @ , ; = ~ -)")
    return None


def split_relpath(path: str, where: str) -> tuple[str, ...]:
    """Split a '/'-separated relative path, rejecting anything that could escape.

    ``where`` names the input (file or ISO) for the error message.
    """
    if "\x00" in path:
        raise UnsafePathError(f"{where}: path {path!r} contains a NUL byte", "remove the entry from the input")
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        raise UnsafePathError(f"{where}: path {path!r} is absolute", "input paths must be relative")
    parts = tuple(p for p in re.split(r"[/\\]", path) if p != "")
    if not parts:
        raise UnsafePathError(f"{where}: empty path", "remove the entry from the input")
    for part in parts:
        if part in (".", ".."):
            raise UnsafePathError(f"{where}: path {path!r} contains {part!r} and could escape the output folder",
                                  "remove the entry from the input")
    return parts


def check_relpath(path: str, where: str) -> tuple[str, ...]:
    """Like :func:`split_relpath`, and also require every component to be Windows-safe."""
    parts = split_relpath(path, where)
    for part in parts:
        problem = component_problem(part)
        if problem:
            raise UnsafePathError(f"{where}: {path!r}: {problem}", "rename the file in the input")
    return parts


def case_clashes(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Return pairs of paths (files, or a file and a folder) equal on a case-insensitive file system."""
    seen: dict[str, str] = {}
    clashes: list[tuple[str, str]] = []
    for path in sorted(set(paths)):
        parts = path.split("/")
        # Every prefix is a folder on disk: a file 'A' and a folder 'a/' clash too.
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            key = prefix.casefold()
            other = seen.setdefault(key, prefix)
            if other != prefix and (other, prefix) not in clashes:
                clashes.append((other, prefix))
    return clashes


def check_no_case_clash(paths: Iterable[str], where: str) -> None:
    """Raise when two paths would land on one file on Windows."""
    clashes = case_clashes(paths)
    if clashes:
        listed = "; ".join(f"{a!r} vs {b!r}" for a, b in clashes)
        raise UnsafePathError(f"{where}: names differ only by case and would overwrite each other on Windows: {listed}",
                              "keep one of each pair in the input")

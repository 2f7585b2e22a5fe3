"""The one template renderer and the one line-ending rule for text that Windows 7 reads.

Templates are package data under ``aero_media/media/templates/`` with ``$NAME``
placeholders (upper-case names only; batch code uses ``%`` and ``!``, never ``$``).
Rendering is strict: a placeholder without a value, a value without a placeholder,
a stray ``$`` or non-ASCII output raises :class:`TemplateError`, never a blank.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from importlib import resources


class TemplateError(ValueError):
    """A template and its values do not fit (a bug, or a value that cannot go on the media)."""


class _Template(string.Template):
    delimiter = "$"
    idpattern = r"[A-Z][A-Z0-9_]*"
    flags = re.NOFLAG


def template_text(name: str) -> str:
    """Read a template from package data."""
    return resources.files("aero_media.media").joinpath("templates", name).read_text(encoding="ascii")


def render(name: str, values: Mapping[str, str]) -> str:
    """Render template ``name`` with ``values``; LF-separated text."""
    return render_text(name, template_text(name), values)


def render_text(name: str, text: str, values: Mapping[str, str]) -> str:
    """Render template ``text`` (called ``name`` in messages) with ``values``."""
    tpl = _Template(text)
    if not tpl.is_valid():
        raise TemplateError(f"template {name}: stray '$' (write '$$' for a literal dollar sign)")
    wanted = set(tpl.get_identifiers())
    given = set(values)
    if wanted - given:
        raise TemplateError(f"template {name}: no value for placeholder(s) {', '.join(sorted(wanted - given))}")
    if given - wanted:
        raise TemplateError(f"template {name}: value(s) given for unknown placeholder(s) "
                            f"{', '.join(sorted(given - wanted))}")
    out = tpl.substitute(values)
    require_ascii(f"rendered {name}", out)
    return out


def require_ascii(what: str, value: str) -> None:
    """Refuse non-ASCII text: Windows 7's cmd.exe and Notepad read these files in the OEM/ANSI code page."""
    if not value.isascii():
        bad = next(ch for ch in value if not ch.isascii())
        raise TemplateError(f"{what} contains a non-ASCII character {bad!r}; text on the media must be ASCII")


def crlf(text: str) -> bytes:
    """Text for Windows 7 tools (Notepad, cmd.exe): ASCII, CRLF line ends, ending with one line end."""
    require_ascii("text", text)
    return ("\r\n".join(text.splitlines()) + "\r\n").encode("ascii")

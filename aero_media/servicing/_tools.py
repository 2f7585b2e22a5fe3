"""Running the external programs servicing needs, with one-line errors that name the Debian package.

Every servicing step shells out (wimlib-imagex, hivexregedit, xorriso): they
stream gigabyte files and are far more robust than Python bindings here. This
module is the one place that starts them, so a missing program or a failure
always reads the same way: what ran, its last error line, and the fix.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ToolError
from ..systools import debian_package, find_tool


@dataclass(frozen=True)
class Result:
    """What a finished program printed (as text; the programs we run print ASCII or UTF-8)."""

    stdout: str
    stderr: str


def which(tool: str) -> str:
    """The path of ``tool``, or a :class:`ToolError` that says which package to install."""
    return find_tool(tool, "servicing Windows images needs it")


def last_line(text: str) -> str:
    """The last non-empty line of a program's error output (the one that says why)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Perl tools (hivexregedit) end with where in their own source they died: not the user's business.
    return _PERL_WHERE.sub("", lines[-1]) if lines else "no error message"


_PERL_WHERE = re.compile(r" at /\S+\.p[ml] line \d+\.?$")


def run_bytes(tool: str, args: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
              what: str = "", hint: str = "", ok_codes: tuple[int, ...] = (0,)) -> tuple[bytes, bytes]:
    """Run ``tool args`` and return (stdout, stderr) as bytes; raise a one-line :class:`ToolError` on failure.

    Output is captured, never shown: these tools print progress and banners
    that would break the single-line log the pipeline keeps.
    """
    exe = which(tool)
    full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
    try:
        proc = subprocess.run([exe, *args], input=stdin, capture_output=True, env=full_env, check=False)
    except OSError as exc:
        raise ToolError(f"{tool} could not start: {exc}",
                        f"check the installation of {debian_package(tool)}") from None
    if proc.returncode not in ok_codes:
        why = last_line(decode(proc.stderr) or decode(proc.stdout))
        raise ToolError(f"{tool} failed{f' ({what})' if what else ''} with exit status {proc.returncode}: {why}",
                        hint or "check that the file is complete and readable")
    return proc.stdout, proc.stderr


def decode(data: bytes) -> str:
    """Program output as text: UTF-8, with undecodable bytes kept (surrogateescape) rather than lost."""
    return data.decode("utf-8", "surrogateescape")


def run(tool: str, args: Sequence[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None,
        what: str = "", hint: str = "", ok_codes: tuple[int, ...] = (0,)) -> Result:
    """:func:`run_bytes` for programs that print text (ASCII or UTF-8)."""
    out, err = run_bytes(tool, args, stdin=None if stdin is None else stdin.encode("utf-8", "surrogateescape"),
                         env=env, what=what, hint=hint, ok_codes=ok_codes)
    return Result(decode(out), decode(err))

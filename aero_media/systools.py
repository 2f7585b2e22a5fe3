"""The system programs the tool runs or tests against, the Debian package of each, and the one door to run them.

Every program the pipeline starts (wimlib-imagex, hivexregedit, osslsigncode,
fsck.fat; xorriso and the other readers are test and bench oracles) goes through
:func:`run` or, for progress, :func:`stream`,
so a missing program or a failure always reads the same way: what ran, its last
error line, and the fix naming the Debian package. Output is captured, never shown:
these tools print progress and banners that would break the single-line log.
The tests skip, or fail in CI, with the same package names (``tests/lib/needs.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import ToolError
from .lifetime import child_preexec

DEBIAN_PACKAGES = {
    "osslsigncode": "osslsigncode",
    "wimlib-imagex": "wimtools",
    "hivexregedit": "libwin-hivex-perl",
    "hivexsh": "libhivex-bin",
    "hivexget": "libhivex-bin",
    "xorriso": "xorriso",
    "fsck.fat": "dosfstools",
    "mkfs.fat": "dosfstools",
    "mdir": "mtools",
    "mcopy": "mtools",
    "mtype": "mtools",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "genisoimage": "genisoimage",
    "isoinfo": "genisoimage",
    "bsdtar": "libarchive-tools",
    "7z": "p7zip-full",
    "udfinfo": "udftools",
    "openssl": "openssl",
    "wine": "wine",
    "strace": "strace",  # only doit's own `doit strace` command runs it (a test of how doit's commands end)
}


def debian_package(tool: str) -> str:
    """The Debian package that installs ``tool`` (its own name when the table does not know it)."""
    return DEBIAN_PACKAGES.get(tool, tool)


def find_tool(tool: str, purpose: str, *, program: str | None = None) -> str:
    """The path of ``program`` (default: ``tool``; a name on PATH or a path), or a :class:`ToolError` naming
    ``tool``'s package; ``purpose`` says what needs it."""
    path = shutil.which(program or tool)
    if path is None:
        raise ToolError(f"{program or tool} is not installed ({purpose})",
                        f"install it, e.g. on Debian: apt-get install {debian_package(tool)}")
    return path


@dataclass(frozen=True)
class Result:
    """What a finished program printed, as bytes, and its exit status."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        """Standard output as text."""
        return decode(self.stdout)

    @property
    def err(self) -> str:
        """Standard error as text."""
        return decode(self.stderr)


def decode(data: bytes) -> str:
    """Program output as text: UTF-8, with undecodable bytes kept (surrogateescape) rather than lost."""
    return data.decode("utf-8", "surrogateescape")


def last_line(text: str) -> str:
    """The last non-empty line of a program's error output (the one that says why)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Perl tools (hivexregedit) end with where in their own source they died: not the user's business.
    return _PERL_WHERE.sub("", lines[-1]) if lines else "no error message"


_PERL_WHERE = re.compile(r" at /\S+\.p[ml] line \d+\.?$")


def _env(env: Mapping[str, str] | None) -> dict[str, str]:
    # The C locale: the messages we parse and show are the programs' own English ones.
    return {**os.environ, "LC_ALL": "C", **(env or {})}


def _failed(tool: str, what: str, code: int, why: str, hint: str) -> ToolError:
    return ToolError(f"{tool} failed{f' ({what})' if what else ''} with exit status {code}: {why}",
                     hint or "check that the file is complete and readable")


def run(tool: str, args: Sequence[str], *, purpose: str, program: str | None = None, stdin: bytes | None = None,
        env: Mapping[str, str] | None = None, timeout: float | None = None, new_session: bool = False,
        what: str = "", hint: str = "", ok_codes: tuple[int, ...] | None = (0,),
        pass_fds: Sequence[int] = ()) -> Result:
    """Run ``tool args`` (``program`` when the caller chose the executable) and return what it printed.

    A missing program, one that cannot start, or one that outlives ``timeout`` seconds is a one-line
    :class:`ToolError`; so is an exit status outside ``ok_codes`` (None: the caller judges the status).
    Without ``stdin`` the program reads nothing (a prompt fails instead of waiting);
    ``new_session`` detaches it from the terminal as well. ``pass_fds``: descriptors the program inherits
    (a file with no name it opens as ``/dev/fd/N``). The program dies with this process (Linux), even one
    killed with SIGKILL.
    """
    exe = find_tool(tool, purpose, program=program)
    try:
        proc = subprocess.run([exe, *args], input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, env=_env(env), timeout=timeout, start_new_session=new_session,
                              pass_fds=tuple(pass_fds), preexec_fn=child_preexec(), check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{tool} did not finish{f' {what}' if what else ''} within {timeout:g} s",
                        hint or "run it again; if it hangs, check its input") from None
    except OSError as exc:
        raise ToolError(f"{tool} could not start: {exc.strerror or exc}",
                        f"check the installation of {debian_package(tool)}") from None
    if ok_codes is not None and proc.returncode not in ok_codes:
        raise _failed(tool, what, proc.returncode, last_line(decode(proc.stderr) or decode(proc.stdout)), hint)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def stream(tool: str, args: Sequence[str], on_line: Callable[[str], None], *, purpose: str,
           env: Mapping[str, str] | None = None, what: str = "", hint: str = "",
           why: Callable[[list[str]], str] | None = None, stdin: bytes | None = None,
           with_stdout: bool = False) -> None:
    """Run ``tool args``, handing each line of its error output to ``on_line`` as it comes (progress).

    A line ends at a newline or a carriage return (progress redrawn in place is a line each time).
    ``with_stdout`` hands over standard output too, in order (wimlib prints its progress there);
    ``stdin`` is what the program reads (default: nothing).
    On failure, a one-line :class:`ToolError`: ``why`` picks the reason from the last lines (default: the last).
    """
    exe = find_tool(tool, purpose)
    tail: list[str] = []
    with tempfile.TemporaryFile() as feed:
        if stdin is not None:
            # From a file, not a pipe: nothing to write while the program's output is read, so no deadlock.
            feed.write(stdin)
            feed.seek(0)
        try:
            with subprocess.Popen([exe, *args], stdin=feed if stdin is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE if with_stdout else subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT if with_stdout else subprocess.PIPE, env=_env(env),
                                  text=True, errors="replace", preexec_fn=child_preexec()) as proc:
                lines = proc.stdout if with_stdout else proc.stderr
                assert lines is not None
                # Text mode reads universal newlines: "\r" ends a line as "\n" does.
                for line in lines:
                    if not line.strip():
                        continue
                    tail = [*tail[-20:], line.rstrip()]
                    on_line(line)
                code = proc.wait()
        except OSError as exc:
            raise ToolError(f"{tool} could not start: {exc.strerror or exc}",
                            f"check the installation of {debian_package(tool)}") from None
    if code != 0:
        raise _failed(tool, what, code, why(tail) if why else last_line("\n".join(tail)), hint)

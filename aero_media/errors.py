"""Error types, sorted by whose fault it is.

Every error renders as one line: what is wrong (naming the file, field or path and
the offending value) and, when there is one, the fix. ``PipelineError`` itself is
never raised; catch it to handle any of ours.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a message and an optional fix."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """Return the single line shown to users."""
        # One line per problem: a message may list several, each already complete.
        text = "\n".join(" ".join(line.split()) for line in self.message.splitlines() if line.strip())
        if self.hint:
            text += f"; fix: {' '.join(self.hint.split())}"
        return text


class SpecError(PipelineError):
    """A spec or contract file is malformed or inconsistent."""



class UsageError(PipelineError):
    """The command line is wrong."""



class SourceError(PipelineError):
    """The driver source (directory or ISO) is not what the spec says."""



class UnsafePathError(SourceError):
    """A name in an input tree could escape the output folder or clash on Windows."""



class FetchError(PipelineError):
    """A download failed or produced the wrong bytes."""



class ChecksumMismatch(FetchError):
    """Bytes on disk or on the wire do not match the pinned sha256."""



class IncompleteDownload(FetchError):
    """The server closed the connection before the whole file arrived."""



class ValidationError(PipelineError):
    """A staged driver package would not install on Windows 7."""

    exit_code = 1


class VerifyError(PipelineError):
    """Written media do not match what was staged."""

    exit_code = 1


class BuildStateError(PipelineError):
    """A file under build/ or dist/ is not what this version of the tool writes (foreign, older, damaged)."""



class ToolError(PipelineError):
    """An external program failed."""



class InternalError(PipelineError):
    """A bug in this tool, not in its input."""

    exit_code = 3


class DiskError(PipelineError):
    """The machine refused a read or write: a full disk, a read-only folder, a size limit."""

    exit_code = 1


# What to do about each refusal the operating system gives, by errno name.
_OS_FIXES = {
    "ENOSPC": "free space on the disk that holds it, then run again",
    "EDQUOT": "free space within your disk quota, then run again",
    "EFBIG": "the file system or a 'ulimit -f' limit refuses a file this large: raise the limit or build elsewhere",
    "EROFS": "the folder is on a read-only file system: remount it read-write or build in a writable checkout",
    "EACCES": "make the folder writable for you (or remove it), then run again",
    "EPERM": "make the folder writable for you (or remove it), then run again",
    "ENAMETOOLONG": "the path is too long for this system: use a shorter checkout path or shallower input",
    "ELOOP": "a symbolic link loops: replace it with a real folder",
}


def disk_error(exc: OSError, what: str | None = None) -> DiskError:
    """One line for an ``OSError``: the path (the error's own, else ``what``), the reason and the fix."""
    import errno
    import os

    name = errno.errorcode.get(exc.errno or 0, "")
    where = exc.filename if exc.filename is not None else what
    reason = exc.strerror or str(exc) or type(exc).__name__
    shown = os.fsdecode(where) if where is not None else "a file"
    return DiskError(f"{shown}: {reason}{f' ({name})' if name else ''}",
                     _OS_FIXES.get(name, "check the path, its permissions and the free space, then run again"))

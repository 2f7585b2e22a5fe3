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

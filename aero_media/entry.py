"""The first module of every ``aero-media``, ``python -m aero_media`` and checkout ``doit`` process.

Its first statement makes Ctrl-C one line and exit 130: the imports that follow take a
third of a second, and Python's own handler would print a traceback from inside them.
Nothing is written while they run, so ending the process at once loses nothing; a command
installs its raising handler once it starts work. The package's ``__init__`` imports
nothing, so the only code before this line is the interpreter's and (for ``doit``) doit's.
"""

from . import ctrlc

ctrlc.install_quiet()

from typing import Any  # noqa: E402  # after the handler, on purpose


def main() -> int:
    """The ``aero-media`` command (see :func:`aero_media.cli.main`)."""
    import sys

    from . import log
    from .cli import main as cli_main

    rc = cli_main()
    # Flushed here: a reader that has gone is met now, quietly, not in the interpreter's exit ("Exception ignored").
    log.write_to(sys.stdout, "")
    return log.PIPE_EXIT if log.pipe_closed() else rc


def __getattr__(name: str) -> Any:
    """doit's task loader (the ``doit.LOADER`` entry point), imported once doit asks for it."""
    if name == "SpecTaskLoader":
        from .taskgraph.main import SpecTaskLoader

        return SpecTaskLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

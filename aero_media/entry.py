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
    """The ``aero-media`` command (see :func:`aero_media.cli.main`); it ends the process (:mod:`aero_media.ending`).

    The code is returned only when another thread is still running, which the
    interpreter's exit would wait for.
    """
    import sys

    from . import ending, log
    from .cli import main as cli_main

    try:
        rc = cli_main()
    except SystemExit as exc:  # argparse's --help (0) and usage errors (2): the code is known all the same
        if not (exc.code is None or isinstance(exc.code, int)):
            raise  # a message to print: the interpreter's to do
        rc = exc.code or 0
    # Flushed here: a reader that has gone is met now, quietly, not in the interpreter's exit ("Exception ignored").
    log.write_to(sys.stdout, "")
    code = log.PIPE_EXIT if log.pipe_closed() else rc
    if ending.can_end():
        # The command is over and its code known: the interpreter's teardown would only free memory.
        ending.end(code)
    return code


def __getattr__(name: str) -> Any:
    """doit's task loader (the ``doit.LOADER`` entry point), imported once doit asks for it."""
    if name == "SpecTaskLoader":
        from .taskgraph.main import SpecTaskLoader

        return SpecTaskLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

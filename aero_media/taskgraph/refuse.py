"""Ending a doit run before any task starts, with one line and the right exit code."""

from __future__ import annotations

import sys
from typing import NoReturn

from ..errors import PipelineError


def refuse(exc: PipelineError) -> NoReturn:
    """Print ``error: <one line>`` on stderr and exit with the error's code (2 for bad input).

    Used while doit loads the dep file and the tasks: doit would turn its own
    ``InvalidDodoFile`` into exit 3 for every kind of problem, and a bad spec or a
    held lock is the user's to fix.
    """
    sys.stderr.write(f"error: {exc.render()}\n")
    raise SystemExit(exc.exit_code)

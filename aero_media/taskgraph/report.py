"""What a doit run prints: task lines and failures on stderr, the build's summary on stdout.

The one rule (:mod:`aero_media.log`): results on stdout, everything else on stderr. doit's
console reporter prints a failure's class name, its traceback and a row of ``#`` around
the captured output, on stdout. Our stages already fail with one line naming the file and
the fix; this reporter prints exactly that, on stderr. Anything else (a bug in this tool, a
doit error) also becomes one line, and the traceback goes to ``build/.last-error.txt`` for
the bug report. Once every task is done, each spec whose ``build:<spec>`` finished gets its
``build/<spec>/report.json`` and one block of the summary (:mod:`aero_media.report`), in the
order of spec names whatever ``-n`` was: the blocks are made here, in the main process,
from the records the tasks wrote, never as tasks finish.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from doit.__main__ import main as doit_main
from doit.cmd_base import Command, DoitCmdBase
from doit.cmd_run import Run
from doit.doit_cmd import DoitMain
from doit.exceptions import BaseFail, TaskFailed
from doit.reporter import ConsoleReporter
from doit.runner import Runner

from .. import ending, log
from ..errors import PipelineError, disk_error
from ..fsutil import write_bytes_atomic
from ..report import combined, render, write_spec_report
from ..spec.load import BrokenSpec
from . import interrupt

ERROR_LOG = Path("build") / ".last-error.txt"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no details"


def _ctrl_c_in(traceback: list[str] | str) -> bool:
    """Whether a formatted traceback (doit keeps the text, not the exception) ends in, or passes, a Ctrl-C."""
    text = "".join(traceback)
    return any(line.startswith(("KeyboardInterrupt", f"SystemExit: {interrupt.EXIT_CODE}",
                                f"{interrupt.Interrupted.__module__}.Interrupted"))
               for line in text.splitlines())


# The stack under complete_run in doit's own command line running tasks (`doit`, `doit run`), innermost first:
# each of these returns what it is handed (Runner.finish: the run's final_result) and doit's main passes it to
# sys.exit (doit/__main__.py, doit/doit_cmd.py, doit/cmd_base.py, doit/cmd_run.py, doit/runner.py).
_DOIT_RUN_STACK = (Runner.finish, Runner.run_all, Run._execute, DoitCmdBase.execute, Command.parse_execute,
                   DoitMain.run, doit_main)
# Below the script when doit runs as `python -m doit` (runpy is a frozen module: its frames name no file).
_RUNPY = frozenset({"_run_module_as_main", "_run_code"})


def _where(code: CodeType) -> tuple[str, int, str]:
    # Compared by place, not identity: `python -m doit` runs doit/__main__.py a second time, as __main__.
    return code.co_filename, code.co_firstlineno, code.co_qualname


def doit_exit_code(frame: FrameType | None) -> int | None:
    """The code the process exits with once ``frame`` (the caller of ``complete_run``) returns, when that is certain.

    Certain only when the whole stack is doit's command line running tasks: the
    functions of :data:`_DOIT_RUN_STACK`, called by top-level code of ``__main__`` with no
    handler that could catch doit's ``SystemExit`` (the ``doit`` script, or doit's own
    ``__main__.py`` under runpy), with doit's own command classes and the report stream
    not a file doit opened (``--output-file``, closed after the run). Anything else (an
    in-process ``DoitMain``, ``doit strace`` and other commands, a wrapper script) is None.
    """
    frames: list[FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    expected = [_where(f.__code__) for f in _DOIT_RUN_STACK]
    ours, rest = frames[:len(expected)], frames[len(expected):]
    if [_where(f.f_code) for f in ours] != expected or not rest:
        return None
    finish, _, execute, _, _, doit_run, _ = ours
    if type(execute.f_locals.get("self")) is not Run or isinstance(execute.f_locals.get("outfile"), str) \
            or type(doit_run.f_locals.get("self")) is not DoitMain:
        return None
    script, *below = rest
    if script.f_code.co_name != "<module>" or script.f_globals.get("__name__") != "__main__" \
            or getattr(script.f_code, "co_exceptiontable", None) != b"":
        return None
    if any(f.f_globals.get("__name__") != "runpy" or f.f_code.co_name not in _RUNPY for f in below):
        return None
    code = getattr(finish.f_locals.get("self"), "final_result", None)
    return code if isinstance(code, int) else None


class OneLineReporter(ConsoleReporter):  # type: ignore[misc]  # doit ships no type information
    """doit's console reporter, with every failure reduced to one line on stderr."""

    desc = "console output; one line on stderr per failure"
    error_log: Path = ERROR_LOG
    """Where a bug's traceback goes (relative: inside the project doit runs in)."""
    fix: str = interrupt.RESUME
    """How to go on after a Ctrl-C."""
    runs_of: Callable[[], tuple[Any, ...]] = staticmethod(lambda: ())
    """The runs (:class:`aero_media.paths.Run`) of the loaded plan, once loaded: the summary reads their records."""
    broken_of: Callable[[], tuple[BrokenSpec, ...]] = staticmethod(lambda: ())
    """The spec files left out of the run as broken, for the summary's last block."""
    sink: list[dict[str, Any]] | None = None
    """Where the combined report goes instead of the text summary (``aero-media build --json``)."""

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.built: set[str] = set()
        # stdout as it is before any task runs: doit swaps sys.stdout to capture each action's output, and
        # under -P thread two actions' swaps interleave, so the one left in place at the end may be a capture.
        self.results = sys.stdout

    def write(self, text: str) -> None:
        """doit's task lines: on stderr above any progress lines; a reader that has gone ends the run quietly."""
        if self.outstream is sys.stderr:
            log.emit(text)
        else:
            log.write_to(self.outstream, text)

    def add_success(self, task: Any) -> None:
        """Remember each spec whose ``build:<spec>`` finished: its media are made and proven."""
        group, sep, name = task.name.partition(":")
        if group == "build" and sep:
            self.built.add(name)

    def add_failure(self, task: Any, fail: BaseFail) -> None:
        """Print the failure's one line at once (doit would hold it for the end).

        A failure that comes of Ctrl-C (a ``RuntimeError`` wrapping it, an ``EBADF``) is no
        failure of the task: the run ends as interrupted, and nothing goes to the error log.
        """
        if interrupt.caused() or _ctrl_c_in(fail.traceback):
            raise interrupt.stop(self.fix)
        if not fail.report:
            return
        message = fail.message if isinstance(fail.message, str) else str(fail.message)
        if isinstance(fail, TaskFailed) and message.startswith("error: "):
            line = " ".join(message.split())
        elif fail.traceback:
            line = self._internal(task.name, fail)
        else:
            line = (f"error: {task.name}: {_first_line(message)}; "
                    "fix: run `doit` again; if it repeats, `doit forget` the task")
        log.emit(line + "\n")

    @classmethod
    def _internal(cls, task_name: str, fail: BaseFail) -> str:
        trace = "".join(fail.traceback)
        saved = ""
        try:
            log_file = cls.error_log
            log_file.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(log_file, f"task {task_name}\n{fail.message}\n{trace}".encode())
            saved = f" (details in {log_file.as_posix()})"
        except OSError:
            pass
        return (f"error: {task_name}: internal error: {_first_line(trace.splitlines()[-1] if trace else '')}"
                f"{saved}; fix: this is a bug in aero-virtio-media: please report it with those details")

    def complete_run(self) -> None:
        """doit's own run errors, one line each; failures were printed as they happened.

        The run's last step: once interrupted, it ends as such, whatever else went wrong.
        """
        if interrupt.caused():
            raise interrupt.stop(self.fix)
        for msg in self.runtime_errors:
            log.emit(f"error: {_first_line(msg)}; fix: check the task names (`doit list`)\n")
        self.summarise()
        if log.pipe_closed():  # the outputs are complete; the reader of stdout or stderr went away
            raise SystemExit(log.PIPE_EXIT)
        if self._run_ends_here():
            ending.end(0, self.fix)

    def _run_ends_here(self) -> bool:
        """Whether the process may end now, with 0: a successful `doit` run has nothing left but ``sys.exit(0)``.

        doit has saved the dep file and run the teardowns before this report; what is left
        is the interpreter's teardown, skipped by :func:`aero_media.ending.end`. Not while an
        exception unwinds through doit's ``finally`` (the code is then not the run's), nor
        when doit reports to a stream it opened (it closes that after the run).
        """
        std = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)  # a capture may be left in place (-P thread)
        return (sys.exc_info()[1] is None and any(self.outstream is s for s in std) and ending.can_end()
                and doit_exit_code(sys._getframe(2)) == 0)

    def summarise(self) -> None:
        """Write each built spec's report.json and print the summary on stdout (or hand it to :attr:`sink`)."""
        reports = []
        for run in self.runs_of():
            if run.spec.name not in self.built:
                continue
            try:
                reports.append(write_spec_report(run))
            except PipelineError as exc:
                log.error(exc.render())
            except OSError as exc:
                log.error(disk_error(exc).render())
            except (KeyError, TypeError, ValueError):  # a record edited by hand, or left by another version
                log.error(f"{run.paths.build.name}: a build record lacks what the report reads; "
                          f"fix: `doit clean build:{run.spec.name}` and build it again")
        broken = self.broken_of()
        report = combined(reports, broken)
        if self.sink is not None:
            self.sink.append(report)
        elif reports or broken:
            log.result(render(report), self.results)


class CommandReporter(OneLineReporter):
    """For a command that runs the graph in a scratch project (``aero-media build-iso`` and the like).

    Its stdout is the command's result alone, so doit's task lines go to stderr with the
    other progress; a stage's failure is left to the command, which prints the error
    whole (every problem on its own line); a bug's traceback is kept outside the
    scratch project, which is deleted when the command ends.
    """

    fix = "run the command again"

    def add_failure(self, task: Any, fail: BaseFail) -> None:
        """Stage errors are the command's to print; anything else is one line now."""
        if interrupt.caused():
            raise interrupt.stop(self.fix)
        message = fail.message if isinstance(fail.message, str) else str(fail.message)
        if isinstance(fail, TaskFailed) and message.startswith("error: "):
            return
        super().add_failure(task, fail)


def command_reporter(error_log: Path) -> type[CommandReporter]:
    """A :class:`CommandReporter` that keeps a bug's traceback at ``error_log`` (an absolute path)."""
    return type("CommandReporter", (CommandReporter,), {"error_log": error_log})


def summary_reporter(runs_of: Callable[[], tuple[Any, ...]], sink: list[dict[str, Any]] | None = None,
                     broken_of: Callable[[], tuple[BrokenSpec, ...]] | None = None) -> type[OneLineReporter]:
    """A :class:`OneLineReporter` that ends the run with the summary of the runs ``runs_of`` returns."""
    attrs: dict[str, Any] = {"runs_of": staticmethod(runs_of), "sink": sink}
    if broken_of is not None:
        attrs["broken_of"] = staticmethod(broken_of)
    return type("OneLineReporter", (OneLineReporter,), attrs)

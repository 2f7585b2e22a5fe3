"""doit's dep file, written crash-safe and read under the checkout lock.

doit's own ``json`` backend rewrites ``build/.doit.db`` in place: a kill or a full
disk during the write leaves it truncated, and every later run fails with
"Invalid JSON data" until someone deletes it. This backend writes a temp file
and renames it over the old one, so the file is always the last complete state;
a damaged file (from an older version of the tool) is reported once and
replaced, costing one full rebuild.

It also takes the checkout's build lock before reading: doit opens the dep file
before it loads any task, and a second run must not read the state the first
one is about to replace. The lock is released once the file is saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit.dependency import JsonDB

from .. import buildlock
from ..errors import PipelineError, disk_error
from ..fsutil import relpath_for_humans, write_bytes_atomic
from ..log import warn
from . import interrupt
from .refuse import refuse

BACKEND_NAME = "aero-json"


class AtomicJsonDB(JsonDB):  # type: ignore[misc]  # doit ships no type information
    """doit's JSON dep-file backend, saved by atomic rename and guarded by the build lock."""

    desc = "JSON file saved by atomic rename (crash-safe), under the checkout's build lock"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        self._build_dir = Path(name).parent
        self._restore_sigint = interrupt.install()  # Ctrl-C while waiting for the lock is quiet too
        try:
            buildlock.acquire(self._build_dir)
        except PipelineError as exc:
            self._restore_sigint()
            refuse(exc)
        self._locked = True
        super().__init__(name, codec, module_name=module_name)

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.name, encoding="utf-8") as fp:
                data = self.codec.decode(fp.read())
            if isinstance(data, dict):
                return data
        except (ValueError, UnicodeDecodeError):
            pass
        warn(f"{relpath_for_humans(Path(self.name))} was damaged (a run cut short by an older version?); "
             "starting afresh: every task runs once")
        return {}

    def dump(self) -> None:
        """Save the state by atomic rename, then let the next run in."""
        try:
            write_bytes_atomic(Path(self.name), self.codec.encode(self._db).encode("utf-8"))
        except OSError as exc:
            # The old file is intact: the next run redoes what this one did.
            refuse(disk_error(exc, relpath_for_humans(Path(self.name))))
        finally:
            if self._locked:
                self._locked = False
                self._restore_sigint()
                buildlock.release(self._build_dir)


"""doit's view of files: content-based, but never re-hashes an unchanged file twice.

doit's default MD5 checker re-hashes a touched-but-unchanged file on every run
until the task reruns (its state is saved only on success), which costs seconds
per run on a 600 MB ISO. This checker keeps the file's stat
(:func:`~aero_media.hashmemo.stat_fields`: mtime, size, ctime, inode, device) and
its sha256 as state, and takes hashes from :class:`~aero_media.hashmemo.HashMemo`,
so a file is hashed at most once per change of its stat, and not at all when a
stage already hashed it. The ctime is in the stat because user space cannot set it
back: a file written in place with its mtime restored (``touch -r``) is hashed.

doit checks only that targets exist. :class:`TargetsIntact` adds the same check
for them: a target whose bytes are not the ones recorded when its task last wrote
it (a byte edited anywhere: an ISO's system area, FAT free space, a report) makes
the task run again, so an edit is replaced rather than published.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from doit.dependency import FileChangedChecker

from ..hashmemo import MEMO_NAME, HashMemo, stat_fields

MEMO_PATH = Path("build") / MEMO_NAME
"""The memo, as doit (which runs in the project folder) reaches it."""

_FIELDS = 5
"""How many numbers :func:`~aero_media.hashmemo.stat_fields` gives; the sha256 follows them in a state."""


class ContentChecker(FileChangedChecker):
    """State is :func:`~aero_media.hashmemo.stat_fields` plus the sha256; equal bytes under a new stat are unchanged."""

    memo_path: Path = MEMO_PATH

    def __init__(self) -> None:
        self._memo = HashMemo(self.memo_path)

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        if not isinstance(state, list | tuple) or len(state) not in (3, _FIELDS + 1):
            return True
        if len(state) == 3:  # the (mtime_ns, size, sha256) of earlier versions: judged by size and digest
            _mtime_ns, size, digest = state
        else:
            *fields, digest = state
            if list(fields) == stat_fields(file_stat):
                return False
            size = fields[1]
        if file_stat.st_size != size:
            return True
        return bool(self._memo.sha256(Path(file_path)) != digest)

    def get_state(self, dep: str, current_state: Any) -> Any:
        fields = stat_fields(os.stat(dep))
        if current_state and len(current_state) == _FIELDS + 1 and list(current_state[:_FIELDS]) == fields:
            return None
        # doit keeps the digest in its own state: only a touched file (check_modified) is worth remembering.
        return (*fields, self._memo.sha256(Path(dep), remember=False))


class TargetsIntact:
    """A doit ``uptodate`` check: each target file holds the bytes it held when the task last succeeded.

    After a run, the targets' stat and sha256 (from the memo: the writers record the
    media's digests) are saved in the task's values. Later runs compare the stat
    first, so a no-op run hashes nothing; a target whose stat changed is hashed (once:
    the memo keeps the result) and the task runs again unless the digest is the
    recorded one. Folders are left to their own task's checks.
    """

    KEY = "targets_intact"

    def __init__(self, targets: Sequence[str], memo_path: Path = MEMO_PATH) -> None:
        self.targets = tuple(targets)
        self.memo_path = memo_path

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        """Whether every target is as recorded; also arranges for the record to be saved after a run."""
        task.value_savers.append(self.record)
        recorded = values.get(self.KEY)
        if not isinstance(recorded, dict):
            return False
        memo = HashMemo(self.memo_path)
        for target in self.targets:
            try:
                st = os.stat(target)
            except OSError:
                return False
            if stat.S_ISDIR(st.st_mode):
                continue
            entry = recorded.get(target)
            if not isinstance(entry, list) or len(entry) != _FIELDS + 1:
                return False
            if entry[:_FIELDS] == stat_fields(st):
                continue
            if st.st_size != entry[1] or memo.sha256(Path(target)) != entry[_FIELDS]:
                return False
        return True

    def record(self) -> dict[str, Any]:
        """The targets' stat and digest as the task left them (doit saves this after a successful run)."""
        memo = HashMemo(self.memo_path)
        saved: dict[str, list[Any]] = {}
        for target in self.targets:
            path = Path(target)
            try:
                st = path.stat()
                if stat.S_ISDIR(st.st_mode):
                    continue
                # The writer's digest when it recorded one; a small manifest is hashed here.
                saved[target] = [*stat_fields(st), memo.sha256(path, remember=False)]
            except OSError:
                continue  # a task that removed its target: the next check finds it missing
        return {self.KEY: saved}

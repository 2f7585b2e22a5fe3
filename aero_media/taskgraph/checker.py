"""doit file checker: content-based, but never re-hashes an unchanged file twice.

doit's default MD5 checker re-hashes a touched-but-unchanged file on every run
until the task reruns (its state is saved only on success), which costs seconds
per run on a 600 MB ISO. This checker keeps (mtime_ns, size, sha256) as state and
takes hashes from :class:`~aero_media.hashmemo.HashMemo`, so a file is hashed at
most once per change of its stat, and not at all when a stage already hashed it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from doit.dependency import FileChangedChecker

from ..hashmemo import MEMO_NAME, HashMemo


class ContentChecker(FileChangedChecker):
    """State is (mtime_ns, size, sha256); equal bytes under a new mtime count as unchanged."""

    memo_path: Path = Path("build") / MEMO_NAME

    def __init__(self) -> None:
        self._memo = HashMemo(self.memo_path)

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        if not isinstance(state, list | tuple) or len(state) != 3:
            return True
        mtime_ns, size, digest = state
        if file_stat.st_mtime_ns == mtime_ns and file_stat.st_size == size:
            return False
        if file_stat.st_size != size:
            return True
        return bool(self._memo.sha256(Path(file_path)) != digest)

    def get_state(self, dep: str, current_state: Any) -> Any:
        st = os.stat(dep)
        if current_state and list(current_state[:2]) == [st.st_mtime_ns, st.st_size]:
            return None
        # doit keeps the digest in its own state: only a touched file (check_modified) is worth remembering.
        return (st.st_mtime_ns, st.st_size, self._memo.sha256(Path(dep), remember=False))

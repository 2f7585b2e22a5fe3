"""doit file checker: content-based, but never re-hashes an unchanged file twice.

doit's default MD5 checker re-hashes a touched-but-unchanged file on every run
until the task reruns (its state is saved only on success), which costs seconds
per run on a 600 MB ISO. This checker keeps (mtime_ns, size, sha256) as state and
memoises hashes by (path, mtime_ns, size, inode) in a small JSON file under build/,
so a file is hashed at most once per change of its stat.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from doit.dependency import FileChangedChecker

from ..fsutil import sha256_file, write_json_atomic

MEMO_NAME = ".hash-memo.json"


class ContentChecker(FileChangedChecker):
    """State is (mtime_ns, size, sha256); equal bytes under a new mtime count as unchanged."""

    memo_path: Path = Path("build") / MEMO_NAME

    def __init__(self) -> None:
        self._memo: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._memo is None:
            try:
                self._memo = json.loads(self.memo_path.read_text("utf-8"))
            except (OSError, ValueError):
                self._memo = {}
        return self._memo

    def _sha256(self, path: str, st: os.stat_result) -> str:
        memo = self._load()
        key = f"{os.path.abspath(path)}\0{st.st_mtime_ns}\0{st.st_size}\0{st.st_ino}"
        digest = memo.get(key)
        if digest is None:
            digest = sha256_file(Path(path))[0]
            memo[key] = digest
            if len(memo) > 4096:
                # Old stats can never match again; keep the file small.
                for k in list(memo)[: len(memo) - 2048]:
                    del memo[k]
            if self.memo_path.parent.is_dir():
                write_json_atomic(self.memo_path, memo)
        return str(digest)

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        if not isinstance(state, list | tuple) or len(state) != 3:
            return True
        mtime_ns, size, digest = state
        if file_stat.st_mtime_ns == mtime_ns and file_stat.st_size == size:
            return False
        if file_stat.st_size != size:
            return True
        return bool(self._sha256(file_path, file_stat) != digest)

    def get_state(self, dep: str, current_state: Any) -> Any:
        st = os.stat(dep)
        if current_state and list(current_state[:2]) == [st.st_mtime_ns, st.st_size]:
            return None
        return (st.st_mtime_ns, st.st_size, self._sha256(dep, st))

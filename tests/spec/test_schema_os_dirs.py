"""The spec schema's OS-folder enum is the Python list (``Arch.os_dirs``), not a second copy of it."""

from __future__ import annotations

import json
from typing import Any

from aero_media.spec.load import SCHEMA_FILE, shipped_file
from aero_media.spec.types import Arch


def _schema() -> Any:
    return json.loads(shipped_file(SCHEMA_FILE).read_text(encoding="utf-8"))


def test_the_schema_allows_exactly_the_os_folders_of_every_arch() -> None:
    every_arch = list(dict.fromkeys(d for arch in Arch for d in arch.os_dirs))
    assert _schema()["$defs"]["os_dir_list"]["items"]["enum"] == every_arch
    assert set(_schema()["$defs"]["os_dirs"]["properties"]) == {a.value for a in Arch}

"""The fixed names a build takes in ``dist/<spec>/``: one table.

:mod:`aero_media.paths` builds the output paths from it, and the spec loader
refuses an output file name that would land on one of them (or on a report,
``<name>.verify.json``). It lives with the spec, below the paths, so that the
loader can read it.
"""

from __future__ import annotations

from enum import StrEnum


class DistName(StrEnum):
    """A name in ``dist/<spec>/`` (or in one of its folders) that no output file name may take."""

    GUEST_TOOLS_DIR = "guest-tools"
    MANIFEST = "manifest.json"
    """The Guest Tools manifest (in ``guest-tools/``; older versions left it in ``dist/<spec>/``)."""
    INSTALL_MEDIA_DIR = "install-media"
    BOOT_WIM = "boot.wim"
    INSTALL_WIM = "install.wim"
    SERVICING_RECORD = "servicing.json"

    @property
    def what(self) -> str:
        """What the name holds, as an error message says it."""
        return _WHAT[self]


_WHAT = {
    DistName.GUEST_TOOLS_DIR: "the Guest Tools folder",
    DistName.MANIFEST: "the Guest Tools manifest",
    DistName.INSTALL_MEDIA_DIR: "the serviced media's folder",
    DistName.BOOT_WIM: "the serviced boot.wim",
    DistName.INSTALL_WIM: "the serviced install.wim",
    DistName.SERVICING_RECORD: "the servicing record",
}

REPORT_SUFFIX = ".verify.json"
"""A medium's read-back report is ``<medium's file name>`` + this, beside it."""

"""The system programs the tool runs or tests against, and the Debian package of each: one table.

Runtime steps (osslsigncode, wimlib-imagex, hivexregedit, xorriso) name their package
in the one-line error a missing program gives; the tests skip, or fail in CI, with the
same package names (``tests/lib/needs.py``).
"""

from __future__ import annotations

import shutil

from .errors import ToolError

DEBIAN_PACKAGES = {
    "osslsigncode": "osslsigncode",
    "wimlib-imagex": "wimtools",
    "hivexregedit": "libwin-hivex-perl",
    "hivexsh": "libhivex-bin",
    "hivexget": "libhivex-bin",
    "xorriso": "xorriso",
    "fsck.fat": "dosfstools",
    "mkfs.fat": "dosfstools",
    "mdir": "mtools",
    "mcopy": "mtools",
    "mtype": "mtools",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "genisoimage": "genisoimage",
    "isoinfo": "genisoimage",
    "bsdtar": "libarchive-tools",
    "7z": "p7zip-full",
    "openssl": "openssl",
    "wine": "wine",
}


def debian_package(tool: str) -> str:
    """The Debian package that installs ``tool`` (its own name when the table does not know it)."""
    return DEBIAN_PACKAGES.get(tool, tool)


def find_tool(tool: str, purpose: str) -> str:
    """The path of ``tool`` on PATH, or a :class:`ToolError` naming the package; ``purpose`` says what needs it."""
    path = shutil.which(tool)
    if path is None:
        raise ToolError(f"{tool} is not installed ({purpose})",
                        f"install it, e.g. on Debian: apt-get install {debian_package(tool)}")
    return path

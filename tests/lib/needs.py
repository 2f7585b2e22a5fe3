"""What a test needs from the machine, and what happens when it is missing: skip, or fail in CI.

Outside CI a test that needs Wine, a system tool or the real upstream data skips
with the reason and the package to install. ``.ci/run`` installs all of them and
sets ``AERO_MEDIA_TEST_REQUIRE=all`` (or a comma-separated list of names), so there
a missing one fails the test instead: CI never goes green by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

from aero_media.systools import DEBIAN_PACKAGES

PACKAGES = DEBIAN_PACKAGES  # the one table, shared with the runtime errors


def required() -> set[str]:
    """Names that must be present here (from ``AERO_MEDIA_TEST_REQUIRE``)."""
    return {n.strip() for n in os.environ.get("AERO_MEDIA_TEST_REQUIRE", "").split(",") if n.strip()}


def need(name: str, missing: str | None) -> None:
    """Skip (or, where required, fail) the calling test when ``missing`` says why ``name`` cannot be used."""
    if missing is None:
        return
    wanted = required()
    if name in wanted or "all" in wanted:
        pytest.fail(f"{name} is required here (AERO_MEDIA_TEST_REQUIRE) but {missing}", pytrace=False)
    pytest.skip(missing)


def need_tool(name: str, why: str = "") -> str:
    """The path of system tool ``name``; skip or fail the test when it is not installed."""
    path = shutil.which(name)
    package = PACKAGES.get(name, name)
    need(name, None if path else f"{name} is not installed{(' (' + why + ')') if why else ''}; "
                                 f"Debian: apt-get install {package} (.ci/run installs it)")
    assert path is not None
    return path

"""Fixtures for the servicing tests: the contract, a test certificate and a synthetic Windows 7 DVD.

Everything is made here from nothing (tests/lib/regf.py, tests/lib/win7image.py);
each needs the tools it runs, so a missing one skips (fails in CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aero_media.spec.contract import Contract
from aero_media.spec.load import load_contract
from aero_media.win7.certs import Cert, load_cert_file
from tests.lib import win7image
from tests.lib.needs import need_tool

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The project's device contract (specs/devices.yaml)."""
    return load_contract(REPO / "specs" / "devices.yaml")


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed test certificate (``make-test-cert``; needs the test extra's cryptography)."""
    pytest.importorskip("cryptography")
    from aero_media.devtools import testcert

    made = testcert.make_test_cert(tmp_path_factory.mktemp("cert"))
    return load_cert_file(made.cer, "aero-test.cer")


@pytest.fixture
def hivex() -> None:
    """Skip (fail in CI) without the hivex tools."""
    need_tool("hivexregedit", "to read and edit registry hives")
    need_tool("hivexsh", "to read registry hives")


@pytest.fixture(scope="session")
def media_tree(tmp_path_factory: pytest.TempPathFactory) -> win7image.Media:
    """A synthetic Windows 7 x64 DVD tree (shared: tests copy what they change)."""
    need_tool("wimlib-imagex", "to build the test WIMs")
    need_tool("hivexregedit", "to build the test hives")
    return win7image.make_media(tmp_path_factory.mktemp("dvd") / "dvd", "amd64")


@pytest.fixture(scope="session")
def media_iso(media_tree: win7image.Media, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That tree as an ISO with El Torito BIOS and UEFI entries (xorriso)."""
    need_tool("xorriso", "to build the test ISO")
    return win7image.make_iso(media_tree.root, tmp_path_factory.mktemp("iso") / "win7.iso")

"""A test that needs a missing tool skips outside CI and fails where the tool is required."""

from __future__ import annotations

import pytest

from tests.lib.needs import need, need_tool


def test_missing_tool_skips_when_not_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AERO_MEDIA_TEST_REQUIRE", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install nosuchpkg-tool"):
        need_tool("nosuchpkg-tool")


@pytest.mark.parametrize("required", ["all", "wine,realdata", "realdata"])
def test_missing_requirement_fails_in_ci(monkeypatch: pytest.MonkeyPatch, required: str) -> None:
    monkeypatch.setenv("AERO_MEDIA_TEST_REQUIRE", required)
    with pytest.raises(pytest.fail.Exception, match="realdata is required here"):
        need("realdata", "the folder is absent")


def test_present_requirement_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_MEDIA_TEST_REQUIRE", "all")
    need("anything", None)
    assert need_tool("sh").endswith("/sh")

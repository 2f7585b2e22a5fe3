"""Windows-safe names: reserved devices, bad characters, traversal, case clashes."""

from __future__ import annotations

import pytest

from aero_media.errors import UnsafePathError
from aero_media.winnames import case_clashes, check_no_case_clash, check_relpath, component_problem, split_relpath


@pytest.mark.parametrize("name", ["CON", "con.txt", "Aux", "nul.inf", "COM1", "lpt9.sys", "PRN .x"])
def test_reserved_names(name: str) -> None:
    assert "reserved device name" in (component_problem(name) or "")


@pytest.mark.parametrize("name,what", [("a:b", "':'"), ("a*b", "'*'"), ("a?", "'?'"), ('a"b', "'\"'"),
                                       ("a|b", "'|'"), ("tab\tname", "'\\t'")])
def test_bad_characters(name: str, what: str) -> None:
    assert what in (component_problem(name) or "")


@pytest.mark.parametrize("name", ["trailing.", "trailing "])
def test_trailing_dot_or_space(name: str) -> None:
    assert "ends with a dot or space" in (component_problem(name) or "")


@pytest.mark.parametrize("name", ["viostor.inf", "WdfCoInstaller01009.dll", "CONSOLE.txt", "com10.sys", "netkvm"])
def test_ordinary_names_pass(name: str) -> None:
    assert component_problem(name) is None


@pytest.mark.parametrize("path", ["../evil", "a/../../b", "/etc/passwd", "C:/x", "\\\\server\\share", "a/./b"])
def test_escaping_paths(path: str) -> None:
    with pytest.raises(UnsafePathError, match=r"absolute|could escape"):
        split_relpath(path, "input.iso")


def test_nul_in_path() -> None:
    with pytest.raises(UnsafePathError, match="NUL byte"):
        split_relpath("a\x00b", "input.iso")


def test_check_relpath_names_input_and_fix() -> None:
    with pytest.raises(UnsafePathError) as exc:
        check_relpath("viostor/CON.sys", "pack")
    assert exc.value.render() == ("pack: 'viostor/CON.sys': 'CON.sys' is a reserved device name on Windows; "
                                  "fix: rename the file in the input")


def test_case_clashes_files_and_folders() -> None:
    assert case_clashes(["a/viostor.sys", "a/VIOSTOR.SYS", "b/x"]) == [("a/VIOSTOR.SYS", "a/viostor.sys")]
    assert case_clashes(["Dir/x", "dir/y"]) == [("Dir", "dir")]
    assert case_clashes(["a/b", "a/c"]) == []
    with pytest.raises(UnsafePathError, match="differ only by case"):
        check_no_case_clash(["x.inf", "X.INF"], "pack")

"""The one door to external programs: missing programs name their Debian package; failures are one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from aero_media import systools
from aero_media.errors import ToolError


def _program(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}")
    path.chmod(0o755)
    return path


def test_a_missing_program_is_one_line_naming_its_debian_package(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolError) as exc:
        systools.run("wimlib-imagex", ["info"], purpose="servicing needs it")
    text = exc.value.render()
    assert "wimlib-imagex" in text and "apt-get install wimtools" in text and "Traceback" not in text


def test_output_status_and_the_c_locale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _program(bin_dir, "tool", "import os\nsys.stdout.write(os.environ['LC_ALL'] + sys.stdin.read())\n"
                              "sys.stderr.write('first\\nthe reason\\n')\nsys.exit(int(sys.argv[1]))\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    done = systools.run("tool", ["0"], purpose="p", stdin=b"-in")
    assert (done.returncode, done.out, done.err) == (0, "C-in", "first\nthe reason\n")
    assert systools.run("tool", ["3"], purpose="p", ok_codes=None).returncode == 3
    with pytest.raises(ToolError) as exc:
        systools.run("tool", ["3"], purpose="p", what="testing")
    assert "exit status 3" in exc.value.message and exc.value.message.endswith("the reason")


def test_stream_hands_over_each_line_and_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _program(bin_dir, "talker", "for i in range(3):\n    sys.stderr.write(f'{i * 50}%\\n')\n"
                                "sys.exit(int(sys.argv[1]))\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    seen: list[str] = []
    systools.stream("talker", ["0"], lambda line: seen.append(line.strip()), purpose="p")
    assert seen == ["0%", "50%", "100%"]
    with pytest.raises(ToolError) as exc:
        systools.stream("talker", ["2"], lambda line: None, purpose="p", why=lambda tail: tail[0])
    assert "exit status 2" in exc.value.message and exc.value.message.endswith("0%")


def test_stream_reads_progress_redrawn_in_place_from_stdout_and_feeds_stdin(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """wimlib prints its progress on stdout, each state ending in a carriage return, and reads commands on stdin."""
    bin_dir = tmp_path / "bin"
    _program(bin_dir, "redraw", "sys.stdout.write('1 of 3\\r2 of 3\\r3 of 3\\n'); sys.stdout.flush()\n"
                                "sys.stderr.write('got ' + sys.stdin.read().strip() + '\\n')\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    seen: list[str] = []
    systools.stream("redraw", [], lambda line: seen.append(line.strip()), purpose="p", stdin=b"add a b\n",
                    with_stdout=True)
    assert seen == ["1 of 3", "2 of 3", "3 of 3", "got add a b"]

"""Run the Guest Tools batch scripts under Wine's cmd.exe, with stub system tools.

Wine's ``cmd`` runs real batch files; the Windows programs the scripts call
(pnputil, certutil, bcdedit, reg, fsutil, wmic, sc, shutdown) are replaced by
the batch stubs in ``tests/lib/winestubs/``, found first on the PATH (``WINEPATH``).
Each stub records its exact command line under a call number and emulates the relevant
Windows 7 state in files under a per-test state folder: the registry as one
folder per key, the driver store, the machine certificate stores, the BCD
``testsigning`` and ``nointegritychecks`` flags, the installed hotfixes and the
clock as WMI reports them. Tests then assert the exact command lines a script
ran and the state it left.

The call log is one numbered folder per call (``winestub-seq.cmd``), not one
file every stub appends to: a stub may run in the script's cmd (``call``) or
in a child cmd (``for /f ('...')``), and Wine's ``>>`` is a seek to the end
and a write, not an atomic append. Numbers are taken with ``mkdir``, which is
atomic, so they follow the order the calls happened in; :meth:`FakeWindows.calls`
refuses a log with a missing or unfinished record instead of guessing.

Wine runs Unix programs asynchronously and without an exit code, so the stubs
must be batch files; the scripts therefore invoke every external tool with
``call`` (harmless for real ``.exe`` files on Windows).

One Wine prefix (booting one takes ~10 s) is shared by a test session; a
persistent ``wineserver`` keeps later runs fast. ``%SystemDrive%`` is the
prefix's ``drive_c``: :meth:`WinePrefix.reset` clears what the scripts write there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STUB_DIR = Path(__file__).with_name("winestubs")
STUB_TOOLS = ("reg", "pnputil", "certutil", "bcdedit", "fsutil", "wmic", "sc", "shutdown")
STUB_HELPERS = ("winestub-seq",)


def wine_unavailable_reason() -> str | None:
    """Why the Wine tests cannot run here, or None when they can."""
    if os.environ.get("AERO_SKIP_WINE"):
        return "AERO_SKIP_WINE is set"
    if shutil.which("wine") is None:
        return "wine is not installed (Debian: apt-get install wine wine64)"
    if shutil.which("wineserver") is None:
        return "wineserver is not on PATH"
    return None


def windows_path(path: Path) -> str:
    """The Wine path of a Unix path: Wine maps ``/`` to drive ``Z:``."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


@dataclass(frozen=True)
class WineResult:
    """What a script run produced."""

    returncode: int
    stdout: str
    calls: tuple[str, ...]
    seconds: float

    def calls_to(self, tool: str) -> list[str]:
        """Logged command lines of one stub tool, e.g. ``"pnputil"``."""
        return [c for c in self.calls if c.split(" ", 1)[0] == tool]


class FakeWindows:
    """The stub tools and the Windows state they emulate, for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.state = root / "state"
        self.log = root / "calls"
        self.bin.mkdir(parents=True)
        self.state.mkdir()
        for tool in (*STUB_TOOLS, *STUB_HELPERS):
            text = (STUB_DIR / f"{tool}.cmd").read_text(encoding="ascii")
            (self.bin / f"{tool}.cmd").write_bytes(("\r\n".join(text.splitlines()) + "\r\n").encode("ascii"))
        self.log.mkdir()

    # -- seeding ---------------------------------------------------------
    def set_admin(self, admin: bool) -> None:
        """Administrator or not (fsutil and bcdedit succeed or are denied)."""
        marker = self.state / "not-admin"
        if admin:
            marker.unlink(missing_ok=True)
        else:
            marker.write_bytes(b"")

    def set_testsigning(self, on: bool) -> None:
        """BCD testsigning as ``bcdedit /enum`` reports it."""
        (self.state / "bcd-testsigning.txt").write_bytes(b"Yes\r\n" if on else b"No\r\n")

    def testsigning(self) -> str | None:
        """``Yes``, ``No`` or None when never set."""
        p = self.state / "bcd-testsigning.txt"
        return p.read_text().strip() if p.exists() else None

    def set_nointegritychecks(self, on: bool) -> None:
        """BCD nointegritychecks as ``bcdedit /enum`` reports it (not listed until set)."""
        (self.state / "bcd-nointegritychecks.txt").write_bytes(b"Yes\r\n" if on else b"No\r\n")

    def nointegritychecks(self) -> str | None:
        """``Yes``, ``No`` or None when never set."""
        p = self.state / "bcd-nointegritychecks.txt"
        return p.read_text().strip() if p.exists() else None

    def lock_bcd(self, locked: bool = True) -> None:
        """Make ``bcdedit /set`` fail (access denied) while ``/enum`` still works."""
        marker = self.state / "bcd-locked"
        if locked:
            marker.write_bytes(b"")
        else:
            marker.unlink(missing_ok=True)

    def set_hotfixes(self, kbs: Iterable[str]) -> None:
        """What ``wmic qfe get HotFixID`` lists (wmic pads the column with spaces)."""
        (self.state / "hotfixes.txt").write_bytes("".join(f"{kb:<11}\r\n" for kb in kbs).encode("ascii"))

    def set_clock(self, local_date_time: str) -> None:
        """What ``wmic os get LocalDateTime /value`` answers, e.g. ``20050301120000.000000+060``."""
        (self.state / "clock.txt").write_bytes(f"{local_date_time}\r\n".encode("ascii"))

    def reg_key_dir(self, key: str) -> Path:
        """Folder of an emulated registry key (``HKLM\\...``)."""
        return self.state.joinpath("reg", *key.split("\\"))

    def set_reg_value(self, key: str, name: str, typ: str, data: str) -> None:
        """Create a key and value as ``reg add`` would."""
        d = self.reg_key_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.val").write_bytes(f"{typ} {data}\r\n".encode("ascii"))

    def add_reg_key(self, key: str) -> None:
        """Create an empty key (for example a CBS package for a hotfix)."""
        self.reg_key_dir(key).mkdir(parents=True, exist_ok=True)

    def reg_values(self, key: str) -> dict[str, tuple[str, str]] | None:
        """Values of an emulated key as {name: (type, data)}, or None when absent."""
        d = self.reg_key_dir(key)
        if not d.is_dir():
            return None
        out = {}
        for f in sorted(d.glob("*.val")):
            typ, _, data = f.read_text(encoding="ascii").strip().partition(" ")
            out[f.name[: -len(".val")]] = (typ, data)
        return out

    def set_certificates(self, thumbprints: Mapping[str, str]) -> None:
        """What ``certutil -dump`` reports: certificate file name -> SHA-1 hex."""
        lines = [f"{name}|{' '.join(t[i:i + 2] for i in range(0, len(t), 2)).lower()}"
                 for name, t in thumbprints.items()]
        (self.state / "thumbs.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))

    def add_to_cert_store(self, store: str, thumbprint: str, name: str) -> None:
        """Put a certificate into an emulated machine store."""
        d = self.state / "certstore" / store
        d.mkdir(parents=True, exist_ok=True)
        (d / thumbprint.lower()).write_bytes(f"{name}\r\n".encode("ascii"))

    def cert_store(self) -> set[tuple[str, str]]:
        """(store, thumbprint) pairs in the emulated machine stores."""
        root = self.state / "certstore"
        return {(p.parent.name, p.name) for p in root.glob("*/*")} if root.exists() else set()

    def driver_store(self) -> dict[str, str]:
        """Emulated driver store: published name -> original INF name."""
        d = self.state / "driverstore"
        return {p.name: p.read_text().strip() for p in sorted(d.glob("oem*.inf"))} if d.exists() else {}

    def mark_in_use(self, oem: str) -> None:
        """Make ``pnputil -d oem`` fail as for a package a device uses."""
        (self.state / "in-use").mkdir(exist_ok=True)
        (self.state / "in-use" / oem).write_bytes(b"")

    def hash_media(self, media: Path, paths: Iterable[str]) -> None:
        """Let ``certutil -hashfile`` answer for these media paths from their bytes now."""
        lines = []
        for rel in paths:
            digest = hashlib.sha256((media / rel.replace("\\", "/")).read_bytes()).hexdigest()
            spaced = " ".join(digest[i:i + 2] for i in range(0, 64, 2))
            lines.append(f"{rel.replace('/', chr(92))}|{spaced}")
        (self.state / "hashes.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))

    # -- reading ---------------------------------------------------------
    def calls(self) -> tuple[str, ...]:
        """Command lines the stubs saw, in the order of their call numbers.

        The numbers must run 1..N without a gap and every record must hold one
        line: anything else is a broken log, and an error, not a result.
        """
        numbers = sorted(int(p.name) for p in self.log.iterdir() if p.is_dir())
        if numbers != list(range(1, len(numbers) + 1)):
            raise AssertionError(f"stub call log {self.log}: call numbers {numbers} are not 1..{len(numbers)}")
        out = []
        for n in numbers:
            record = self.log / str(n) / "call.txt"
            lines = record.read_bytes().decode("ascii", errors="replace").splitlines() if record.exists() else []
            if len(lines) != 1:
                raise AssertionError(f"stub call log {record}: {len(lines)} line(s), expected 1")
            out.append(lines[0].rstrip())
        return tuple(out)

    def clear_calls(self) -> None:
        """Forget the logged calls (between two script runs)."""
        shutil.rmtree(self.log)
        self.log.mkdir()


class WinePrefix:
    """A booted Wine prefix with a persistent wineserver."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.env = {
            **os.environ,
            "WINEPREFIX": str(prefix),
            "WINEDEBUG": "-all",
            # No Mono/Gecko install prompts: the tests need only cmd.exe.
            "WINEDLLOVERRIDES": "mscoree,mshtml=",
            "WINEARCH": "win64",
        }
        self.env.pop("DISPLAY", None)

    @property
    def drive_c(self) -> Path:
        return self.prefix / "drive_c"

    def boot(self) -> float:
        """Create the prefix and start a persistent wineserver; returns seconds taken."""
        start = time.monotonic()
        self.prefix.mkdir(parents=True, exist_ok=True)
        # Already running for this prefix is fine (exit status 2). Wine's background
        # services inherit open descriptors: give them none of ours.
        subprocess.run(["wineserver", "-p"], env=self.env, check=False, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["wine", "cmd", "/c", "echo", "ready"], env=self.env, check=True, timeout=300,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic() - start

    def shutdown(self) -> None:
        """Stop this prefix's wineserver (and with it every Wine process of the prefix)."""
        subprocess.run(["wineserver", "-k"], env=self.env, check=False, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def reset(self) -> None:
        """Remove what the Guest Tools scripts write into the prefix."""
        shutil.rmtree(self.drive_c / "AeroGuestTools", ignore_errors=True)
        for p in (self.drive_c / "windows" / "system32" / "drivers").glob("viostor.sys"):
            p.unlink()

    def run_script(
        self,
        script: Path,
        args: Sequence[str] = (),
        *,
        fake: FakeWindows,
        processor_architecture: str | None = None,
        stdin: str = "",
        timeout: float = 180,
    ) -> WineResult:
        """Run ``wine cmd /c SCRIPT ARGS`` from the script's folder, stubs first on the PATH.

        The script is named without its folder: Wine's ``cmd /c`` cannot parse a
        quoted path with parentheses, and a wrapper batch file would lose the
        exit code (Wine's ``call`` of a batch file returns 1 for any failure).
        The script still sees its full path in ``%~dp0``.
        A run that outlasts ``timeout`` seconds is stopped and fails the test.
        ``processor_architecture`` (for example ``x86``) is set on the same
        command line, because Wine sets PROCESSOR_ARCHITECTURE itself.
        """
        fake.clear_calls()
        env = {
            **self.env,
            "WINEPATH": windows_path(fake.bin),
            "WINESTUB_LOG": windows_path(fake.log),
            "WINESTUB_STATE": windows_path(fake.state),
        }
        # ".\\" keeps "verify.cmd" from being read as cmd's own VERIFY command.
        command = " ".join([".\\" + script.name, *args])
        if processor_architecture:
            command = f"set PROCESSOR_ARCHITECTURE={processor_architecture}&& {command}"
        # Output goes to files, not pipes: a Wine process left running would
        # hold a pipe open and make the run wait for it.
        out_path, in_path = fake.root / "stdout.txt", fake.root / "stdin.txt"
        in_path.write_bytes(stdin.encode("ascii"))
        start = time.monotonic()
        with out_path.open("wb") as out, in_path.open("rb") as inp:
            try:
                proc = subprocess.run(
                    ["wine", "cmd", "/c", command],
                    env=env, cwd=str(script.parent), stdin=inp, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                # Killing "wine" leaves the script's cmd processes running in the
                # wineserver: stop them all, then boot again for the next test.
                self.shutdown()
                self.boot()
                raise AssertionError(f"{command} did not finish within {timeout:g} s") from None
        seconds = time.monotonic() - start
        return WineResult(
            returncode=proc.returncode,
            stdout=out_path.read_bytes().decode("ascii", errors="replace").replace("\r\n", "\n"),
            calls=fake.calls(),
            seconds=seconds,
        )

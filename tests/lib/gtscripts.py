"""Guest Tools script fixtures shared by the static tests and the Wine runs: rendering, media trees, parsers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from aero_media.fsutil import dump_json
from aero_media.media import scripts
from aero_media.media.scripts import DriverEntry, render_guest_tools_scripts, render_media_hashes
from aero_media.spec.contract import Contract
from aero_media.spec.load import load_contract
from aero_media.spec.types import SigningPolicy

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("setup.cmd", "uninstall.cmd", "verify.cmd", scripts.CHECKS_CMD_PATH)
MANIFEST = "manifest.json"
CBS = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages"
SERVICES = r"HKLM\SYSTEM\CurrentControlSet\Services"
CDD = r"HKLM\SYSTEM\CurrentControlSet\Control\CriticalDeviceDatabase"
TEST_THUMB = "AB" * 20
TRUST_THUMB = "CD" * 20

def load_repo_contract() -> Contract:
    return load_contract(ROOT / "specs" / "devices.yaml")


def make_drivers(arches: Sequence[str] = ("x86", "amd64")) -> list[DriverEntry]:
    """viostor, netkvm and vioinput for each arch, as the pipeline lays them out."""
    out = []
    for arch in arches:
        out += [
            DriverEntry(arch, "viostor", "viostor.inf", "viostor", "virtio-blk", "viostor.sys"),
            DriverEntry(arch, "netkvm", "netkvm.inf", "netkvm", "virtio-net", "netkvm.sys"),
            DriverEntry(arch, "vioinput", "vioinput.inf", "vioinput", "virtio-input", None),
        ]
    return out


def render(contract: Contract, drivers: Sequence[DriverEntry] | None = None, **kw: object) -> dict[str, bytes]:
    args: dict[str, object] = dict(
        signing_policy="test",
        certs=["aero-test.cer"],
        trust_certs=["redhat.cer"],
        sha256_only=False,
        version="1.2.3",
        build_id="b42",
        label="AERO_GUEST_TOOLS",
        cert_thumbprints={"aero-test.cer": TEST_THUMB, "redhat.cer": TRUST_THUMB},
    )
    args.update(kw)
    args["signing_policy"] = SigningPolicy(args["signing_policy"])
    return render_guest_tools_scripts(contract, make_drivers() if drivers is None else drivers, **args)  # type: ignore[arg-type]


def inf_text(service: str) -> bytes:
    """A small INF shaped like upstream's (AddService line as viostor.inf writes it)."""
    return (
        "[Version]\r\nSignature=\"$WINDOWS NT$\"\r\nProvider=%VENDOR%\r\n\r\n"
        f"[x_inst.Services]\r\nAddService = {service}, 0x00000002 , x_Service_Inst, x_EventLog_Inst\r\n\r\n"
        "[Strings]\r\nVENDOR = \"Red Hat, Inc.\"\r\n"
    ).encode("ascii")


def build_media(root: Path, rendered: dict[str, bytes], drivers: Sequence[DriverEntry]) -> Path:
    """Write a Guest Tools media tree (scripts, config, fake drivers, certs, files.sha256, manifest.json)."""
    for rel, data in rendered.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for d in drivers:
        folder = root / "drivers" / d.arch / d.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / d.inf).write_bytes(inf_text(d.service))
        (folder / f"{d.name}.cat").write_bytes(b"0\x82 fake catalog " + d.arch.encode())
        if d.sys_file:
            (folder / d.sys_file).write_bytes(b"MZ fake " + d.name.encode() + b" " + d.arch.encode())
    (root / "certs").mkdir(exist_ok=True)
    (root / "certs" / "aero-test.cer").write_bytes(b"0\x82 test cert")
    (root / "certs" / "redhat.cer").write_bytes(b"0\x82 publisher cert")
    (root / "README.txt").exists() or (root / "README.txt").write_bytes(b"readme\r\n")
    write_hashes(root)
    write_manifest(root)
    return root


def all_files(root: Path) -> list[str]:
    """Media-relative paths (backslashes) of every file on the media."""
    return sorted(str(p.relative_to(root)).replace("/", "\\") for p in root.rglob("*") if p.is_file())


def media_files(root: Path) -> list[str]:
    """The files config/files.sha256 lists: all but itself and manifest.json (which comes after it)."""
    return [p for p in all_files(root)
            if p.replace("\\", "/") not in (scripts.MEDIA_HASHES_PATH, MANIFEST)]


def _record(root: Path, rel: str) -> tuple[str, str, int]:
    data = (root / rel.replace("\\", "/")).read_bytes()
    return rel, hashlib.sha256(data).hexdigest(), len(data)


def write_hashes(root: Path) -> None:
    files = [_record(root, rel) for rel in media_files(root)]
    (root / scripts.MEDIA_HASHES_PATH).write_bytes(render_media_hashes(files))


def write_manifest(root: Path) -> None:
    """manifest.json as the build writes it (dump_json): every file, config/files.sha256 included."""
    sets = parse_sets((root / scripts.MEDIA_CMD_PATH).read_text(encoding="ascii"))
    records = [_record(root, rel) for rel in [*media_files(root), scripts.MEDIA_HASHES_PATH]]
    manifest = {
        "package": {"name": "aero-guest-tools", "version": sets["AGT_VERSION"], "build_id": sets["AGT_BUILD_ID"]},
        "files": [{"path": rel.replace("\\", "/"), "sha256": sha, "size": size} for rel, sha, size in sorted(records)],
    }
    (root / MANIFEST).write_bytes(dump_json(manifest))


SET_QUOTED = re.compile(r'^set "([A-Za-z0-9_.+-]+)=(.*)"$')
SET_PLAIN = re.compile(r"^set ([A-Za-z0-9_.+-]+)=(.*)$")


def parse_sets(text: str) -> dict[str, str]:
    """The variables a generated config .cmd sets."""
    out = {}
    for line in text.splitlines():
        m = SET_QUOTED.match(line) or SET_PLAIN.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def quoted_items(value: str) -> list[str]:
    """Items of a `"a" "b"` list value."""
    items = re.findall(r'"([^"]*)"', value)
    assert value == " ".join(f'"{i}"' for i in items), f"not a clean quoted list: {value!r}"
    return items


def script_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def code_lines(text: str) -> list[str]:
    """Lines that are code (no rem/@rem comments, no blank lines)."""
    return [ln for ln in script_lines(text) if ln.strip() and not re.match(r"\s*@?rem(\s|$)", ln, re.I)]


IF_PREFIX = re.compile(
    r"""(?ix)^\s*(?:if\s+(?:/i\s+)?(?:not\s+)?(?:
        defined\s+\S+ | exist\s+"[^"]*" | errorlevel\s+\d+ | "[^"]*"==\s*"[^"]*" |
        \S+\s+(?:gtr|lss|equ|neq|geq|leq)\s+\S+
    )\s+)*"""
)


def command_of(line: str) -> str:
    """The command a line runs: without leading if-conditions and quoted text;
    an echo (its text is not a command) becomes empty."""
    s = IF_PREFIX.sub("", line).strip()
    s = re.sub(r'^>>?\s*"[^"]*"\s*', "", s)
    if re.match(r"echo\b|echo\.", s, re.I):
        return ""
    return re.sub(r'"[^"]*"', '""', s)


def label_segments(text: str) -> list[tuple[str, list[str]]]:
    """(label, code lines up to the next label); the first label is '<top>'."""
    segs: list[tuple[str, list[str]]] = [("<top>", [])]
    for line in code_lines(text):
        m = re.match(r"^:([A-Za-z0-9_]+)\s*$", line)
        if m:
            segs.append((m.group(1), []))
        else:
            segs[-1][1].append(line)
    return segs



MUTATING = re.compile(
    r"""(?ix)(?:^|\s|\()(?:
        reg\s+(?:add|delete)\b | pnputil\s+-(?:a|i|d|f)\b | certutil\s+-(?:addstore|delstore)\b |
        bcdedit\s+/(?:set|deletevalue)\b | shutdown\b | copy\b | del\b | move\b | mkdir\b | md\b | rmdir\b | rd\b
    )"""
)

"""Re-open written media and prove they hold what was staged.

An ISO is read back with pycdlib, which shares no code with our writer
(:mod:`aero_media.media.isowriter`): names from Joliet (what Windows reads), the
labels, and the sha256 of every file, streamed in chunks; Rock Ridge names must
agree with Joliet's. :mod:`aero_media.media.isoscan` adds what pycdlib does not
tell (every date, files cut off by a truncated image). A zip is read back with
:mod:`zipfile`. Both go through one comparison against the medium's own
``manifest.json`` and, in the pipeline, the stage and notices manifests.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import struct
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pycdlib

from ..errors import BuildStateError, SourceError, VerifyError
from ..fsutil import CHUNK, sha256_file, write_json_atomic
from ..hashmemo import HashMemo
from ..log import Progress
from ..manifests import DriversIsoManifest, FileRecord, GuestToolsManifest, IsoReport, ZipReport
from ..paths import MediaLayout
from .isoscan import Stamp, scan_path
from .isowriter import JOLIET_LABEL_MAX
from .zipwriter import zip_time

Seen = dict[str, tuple[str, int]]
"""What a reader found: media path -> (sha256, size)."""


@dataclass(frozen=True)
class IsoContent:
    """What a reader sees on an ISO: labels and files per name space, with hashes, and every date."""

    label: str
    joliet_label: str | None
    joliet: Seen
    rock_ridge: set[str]
    stamps: tuple[Stamp, ...] = ()
    extents: dict[str, int] = field(default_factory=dict)
    """Where each Joliet file's bytes start (hard-linked copies share one)."""
    manifest: bytes | None = None
    """The bytes of ``manifest.json`` at the root, kept from the one read that hashed them."""


def _hash_stream(chunks: Iterable[bytes], progress: Progress) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
        progress.advance(len(chunk))
    progress.advance(0, files=1)
    return h.hexdigest(), size


MANIFEST_MAX = 64 * 1024 * 1024
"""A media manifest is kilobytes; a bigger ``manifest.json`` is not one, and is not held in memory."""

# What pycdlib raises on malformed records or data (parsing at open is wrapped more broadly).
_PARSE_ERRORS = (pycdlib.pycdlibexception.PyCdlibException, struct.error, ValueError, IndexError, KeyError,
                 AttributeError, UnicodeDecodeError, RecursionError, OverflowError, TypeError)
_VERSION = re.compile(r";[0-9]*$")


def _open_pycdlib(path: Path) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", "check the path") from None
    except Exception as exc:  # untrusted bytes: whatever pycdlib raises on them means "damaged"
        raise VerifyError(f"{path.name}: not a readable ISO 9660 image ({type(exc).__name__}: {exc})",
                          "rebuild the media") from None
    return iso


def _files(iso: pycdlib.PyCdlib) -> tuple[str, list[tuple[str, str]]]:
    """The name space files are read in (Joliet, else the primary tree), and (media path, pycdlib path) pairs."""
    space = "joliet_path" if iso.has_joliet() else "iso_path"
    out = []
    for root, _dirs, names in iso.walk(**{space: "/"}):
        for name in names:
            raw = f"{root.rstrip('/')}/{name}"
            out.append((_VERSION.sub("", raw).lstrip("/"), raw))
    return space, out


def _read_file(iso: pycdlib.PyCdlib, space: str, raw: str, size: int, progress: Progress | None,
               keep: bool) -> tuple[str, int, bytes | None]:
    """Hash one file through pycdlib in chunks; its bytes too when ``keep``. A short read is an error."""
    h = hashlib.sha256()
    got = 0
    kept: list[bytes] | None = [] if keep else None
    with iso.open_file_from_iso(**{space: raw}) as fp:
        while chunk := fp.read(CHUNK):
            h.update(chunk)
            got += len(chunk)
            if progress is not None:
                progress.advance(len(chunk))
            if kept is not None:
                kept.append(chunk)
    if got != size:
        raise VerifyError(f"{raw.lstrip('/')} ends {size - got} bytes early: the image is truncated",
                          "rebuild the media")
    return h.hexdigest(), got, b"".join(kept) if kept is not None else None


def read_iso(path: Path) -> IsoContent:
    """Hash every file through pycdlib (Joliet names); list Rock Ridge names; scan every date ourselves.

    Files are streamed in chunks, and each stored copy is read once: names that share
    an extent (the ``$WinPEDriver$`` tree beside ``win7``) share its hash.
    """
    try:
        stamps = scan_path(path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", "check the path") from None
    progress = Progress(f"verify {path.name}", path.stat().st_size)
    iso = _open_pycdlib(path)
    try:
        space, files = _files(iso)
        seen: Seen = {}
        extents: dict[str, int] = {}
        by_extent: dict[tuple[int, int], tuple[str, int]] = {}
        manifest = None
        for media_path, raw in files:
            rec = iso.get_record(**{space: raw})
            key = (rec.extent_location(), rec.get_data_length())
            extents[media_path] = key[0]
            keep = media_path == "manifest.json" and key[1] <= MANIFEST_MAX
            if key not in by_extent or keep:
                digest, size, data = _read_file(iso, space, raw, key[1], progress, keep)
                by_extent[key] = (digest, size)
                manifest = data if keep else manifest
            seen[media_path] = by_extent[key]
            progress.advance(0, files=1)
        rock_ridge: set[str] = set()
        if iso.has_rock_ridge():
            for root, _dirs, names in iso.walk(rr_path="/"):
                rock_ridge.update(f"{root.rstrip('/')}/{n}".lstrip("/") for n in names)
        label = iso.pvd.volume_identifier.decode("ascii", "replace").rstrip(" \0")
        jvd = iso.joliet_vd
        joliet_label = jvd.volume_identifier.decode("utf-16-be", "replace").rstrip(" \0") if jvd else None
    except _PARSE_ERRORS as exc:
        raise VerifyError(f"{path.name}: damaged ISO 9660 image ({type(exc).__name__}: {exc})",
                          "rebuild the media") from None
    finally:
        iso.close()
    progress.close()
    return IsoContent(label, joliet_label, seen, rock_ridge, stamps, extents, manifest)


@dataclass
class Expectation:
    """What a medium must hold: required paths, and files with where their expected bytes were stated."""

    label: str | None = None
    required_paths: list[str] = field(default_factory=list)
    files: dict[str, tuple[FileRecord, str]] = field(default_factory=dict)
    extra_files_allowed: bool = False
    epoch: int | None = None
    """Every date on the medium must be this (unspecified dates aside); None: dates are not checked."""
    same_extent: list[tuple[str, str]] = field(default_factory=list)
    """Pairs of paths that must be one stored copy (``$WinPEDriver$`` beside ``win7``)."""


def linked_copies(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(``$WinPEDriver$/...``, ``win7/...``) pairs among ``paths``: copies the writer stores once."""
    have = set(paths)
    pairs = []
    for p in sorted(have):
        if p.startswith(WINPE_PREFIX):
            twin = MediaLayout.STAGED.value.split("/", 1)[0] + "/" + p[len(WINPE_PREFIX):]
            if twin in have:
                pairs.append((p, twin))
    return pairs


WINPE_PREFIX = MediaLayout.WINPE.value.split("/", 1)[0] + "/"


def compare(seen: Seen, exp: Expectation) -> list[str]:
    """Every difference between what a reader found and what the medium must hold."""
    problems = [f"missing required file {p}" for p in exp.required_paths if p not in seen]
    for p, (rec, origin) in sorted(exp.files.items()):
        got = seen.get(p)
        if got is None:
            if p not in exp.required_paths:
                problems.append(f"missing {p} (listed in {origin})")
        elif got != rec.identity:
            problems.append(f"{p}: sha256 {got[0]} size {got[1]} differs from {origin} "
                            f"(sha256 {rec.sha256} size {rec.size})")
    if not exp.extra_files_allowed:
        extra = sorted(set(seen) - set(exp.files) - set(exp.required_paths))
        problems += [f"unexpected file {p} (not in any manifest)" for p in extra]
    return problems


def date_problems(stamps: Iterable[Stamp], epoch: int | None) -> list[str]:
    """Dates that are not the build epoch: a clock leaked into the medium, and it is not reproducible."""
    if epoch is None:
        return []
    wrong = [s for s in stamps if s.when is not None and s.when != epoch]
    if not wrong:
        return []
    shown = ", ".join(f"{s.where} = {_when(s.when)}" for s in wrong[:3]) + (", ..." if len(wrong) > 3 else "")
    return [f"{len(wrong)} date(s) differ from the build epoch {_when(epoch)}: {shown}"]


def _when(t: int | None) -> str:
    if t is None or t < 0:
        return "not a date"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def check_iso(content: IsoContent, exp: Expectation) -> list[str]:
    """Return every problem found comparing ``content`` with ``exp``."""
    problems: list[str] = []
    if exp.label is not None:
        if content.label != exp.label:
            problems.append(f"volume label is {content.label!r}, expected {exp.label!r}")
        if content.joliet_label is not None and content.joliet_label != exp.label[:JOLIET_LABEL_MAX]:
            problems.append(f"Joliet volume label is {content.joliet_label!r}, expected "
                            f"{exp.label[:JOLIET_LABEL_MAX]!r}")
    if content.joliet_label is None:
        problems.append("the ISO has no Joliet tree; Windows would show upper-case 8.3 names")
    problems += date_problems(content.stamps, exp.epoch)
    problems += compare(content.joliet, exp)
    for a, b in exp.same_extent:
        if a in content.extents and b in content.extents and content.extents[a] != content.extents[b]:
            problems.append(f"{a} is stored apart from {b} (extents {content.extents[a]} and {content.extents[b]}); "
                            "the two must be one hard-linked copy")
    if content.rock_ridge and content.rock_ridge != set(content.joliet):
        diff = sorted(content.rock_ridge.symmetric_difference(content.joliet))
        problems.append(f"Rock Ridge and Joliet names differ: {', '.join(diff[:10])}")
    return problems


# Spelled out, not imported from the writer (notices.NOTICES_NAME): Aero's list, checked independently of ours.
AERO_MINIMUM = ("README.txt", "THIRD_PARTY_NOTICES.md")
"""What Aero's verify_iso.py requires of any drivers ISO, besides the required INFs."""


def expectation_from_media_manifest(manifest: DriversIsoManifest, require_arches: Iterable[str]) -> Expectation:
    """Build the expectation a medium states about itself in its ``manifest.json``."""
    arches = set(require_arches)
    required = [*AERO_MINIMUM, "manifest.json"]
    required += [p.inf for p in manifest.packages if p.required and p.arch.value in arches]
    return Expectation(label=manifest.volume_label, required_paths=required,
                       files={r.path: (r, "manifest.json") for r in manifest.files},
                       epoch=manifest.source_date_epoch,
                       same_extent=linked_copies(r.path for r in manifest.files))


def expectation_from_guest_tools_manifest(manifest: GuestToolsManifest,
                                          require_arches: Iterable[str]) -> Expectation:
    """The expectation a Guest Tools medium states about itself: its files, and a driver per required arch."""
    # Its scripts are among its files; naming them here would tie this module to their templates.
    required = ["manifest.json"]
    for arch in sorted(set(require_arches)):
        infs = [d.inf for d in manifest.drivers if d.arch.value == arch]
        # No package for an arch the caller requires: name the storage driver it would need first.
        required += infs or [f"{MediaLayout.GUEST_TOOLS.driver_dir(arch, 'viostor')}/viostor.inf"]
    return Expectation(label=manifest.volume_label, required_paths=required,
                       files={r.path: (r, "manifest.json") for r in manifest.files},
                       epoch=manifest.package.source_date_epoch)


def read_media_manifest(path: Path) -> DriversIsoManifest | GuestToolsManifest | None:
    """Read our drivers ISO or Guest Tools manifest from an ISO (through pycdlib); None when it is not ours."""
    iso = _open_pycdlib(path)
    try:
        space, files = _files(iso)
        raw = next((r for p, r in files if p == "manifest.json"), None)
        if raw is None:
            return None
        size = iso.get_record(**{space: raw}).get_data_length()
        if size > MANIFEST_MAX:
            raise VerifyError(f"{path.name}: manifest.json is {size} bytes, not a media manifest",
                              "rebuild the media")
        data = _read_file(iso, space, raw, size, None, True)[2]
    except _PARSE_ERRORS as exc:
        raise VerifyError(f"{path.name}: damaged ISO 9660 image ({type(exc).__name__}: {exc})",
                          "rebuild the media") from None
    finally:
        iso.close()
    return parse_media_manifest(data or b"", path.name)


def parse_media_manifest(raw: bytes, name: str) -> DriversIsoManifest | GuestToolsManifest | None:
    """Our drivers ISO or Guest Tools manifest from the bytes of ``manifest.json``; None when it is not ours."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerifyError(f"{name}: manifest.json is not valid JSON ({exc})", "rebuild the media") from None
    where = f"{name}: manifest.json"
    try:
        if isinstance(data, dict) and isinstance(data.get("package"), dict):  # Aero's schema 4 shape
            return GuestToolsManifest.from_json(data, where)
        return DriversIsoManifest.from_json(data, where)
    except BuildStateError:
        return None  # someone else's manifest (Aero's build.py --include-manifest writes one)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VerifyError(f"{name}: manifest.json is a damaged media manifest ({type(exc).__name__}: {exc})",
                          "rebuild the media") from None


def _merge(exp: Expectation, extra: Expectation, have_manifest: bool) -> list[str]:
    """Add the pipeline's own expectation; return where it and the medium's manifest disagree."""
    mismatched: list[str] = []
    if extra.label is not None:
        exp.label = extra.label
    if extra.epoch is not None:
        exp.epoch = extra.epoch
    exp.required_paths += [p for p in extra.required_paths if p not in exp.required_paths]
    exp.same_extent += [p for p in extra.same_extent if p not in exp.same_extent]
    for p, (rec, origin) in extra.files.items():
        mine = exp.files.get(p)
        if have_manifest and mine is None:
            mismatched.append(f"{p} is in {origin} but not in manifest.json")
        elif mine is not None and mine[0].identity != rec.identity:
            mismatched.append(f"{p}: manifest.json and {origin} disagree on its sha256")
        exp.files[p] = (rec, origin)
    return mismatched


def verify_iso(path: Path, require_arches: Iterable[str], extra: Expectation | None = None,
               report: Path | None = None, default_required: Iterable[str] = ("viostor", "netkvm"),
               self_described: bool = True, memo: HashMemo | None = None) -> IsoReport:
    """Verify an ISO against its own manifest (plus ``extra``); write ``report``; raise on problems.

    ``self_described=False`` checks against ``extra`` alone (media whose manifest is not a drivers ISO manifest).
    ``memo`` supplies (and keeps) the ISO's own sha256, which the writer and doit's checker need too.
    """
    arches = sorted(set(require_arches))
    content = read_iso(path)
    if self_described and content.manifest is None and "manifest.json" in content.joliet:
        raise VerifyError(f"{path.name}: manifest.json is {content.joliet['manifest.json'][1]} bytes, "
                          "not a media manifest", "rebuild the media")
    manifest = (parse_media_manifest(content.manifest, path.name)
                if self_described and content.manifest is not None else None)
    if not self_described:
        exp = Expectation()
    elif isinstance(manifest, GuestToolsManifest):
        exp = expectation_from_guest_tools_manifest(manifest, arches)
    elif manifest is not None:
        exp = expectation_from_media_manifest(manifest, arches)
    else:
        # Media from elsewhere: hold them to Aero's documented minimum; they may carry more files.
        required = [f"{MediaLayout.STAGED.driver_dir(a, d)}/{d}.inf" for a in arches for d in default_required]
        exp = Expectation(required_paths=[*AERO_MINIMUM, *required],
                          extra_files_allowed=True)
    mismatched = _merge(exp, extra, manifest is not None) if extra is not None else []
    problems = mismatched + check_iso(content, exp)
    digest, size = _file_hash(path, memo)
    result = IsoReport(iso=path.name, sha256=digest, size=size, label=content.label,
                       joliet_label=content.joliet_label, require_arches=tuple(arches),
                       files_checked=len(content.joliet), problems=tuple(problems))
    if report is not None:
        write_json_atomic(report, result.to_json())
    if problems:
        raise VerifyError(f"{path.name}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
                          f"see {report.name if report else 'the list above'}; rebuild the media")
    return result


def _chunks(fp: IO[bytes]) -> Iterator[bytes]:
    while chunk := fp.read(CHUNK):
        yield chunk


def read_zip(path: Path) -> tuple[Seen, tuple[Stamp, ...]]:
    """Hash every file in a zip; also return every entry's date."""
    progress = Progress(f"verify {path.name}", path.stat().st_size)
    stamps: list[Stamp] = []
    try:
        with zipfile.ZipFile(path) as zf:
            seen: Seen = {}
            for info in zf.infolist():
                stamps.append(Stamp(f"zip entry {info.filename}", calendar.timegm((*info.date_time, 0, 0, -1))))
                if not info.is_dir():
                    with zf.open(info) as fp:
                        seen[info.filename] = _hash_stream(_chunks(fp), progress)
    except (zipfile.BadZipFile, OSError) as exc:
        raise VerifyError(f"{path.name}: not a readable zip ({exc})", "rebuild it") from None
    progress.close()
    return seen, tuple(stamps)


def _file_hash(path: Path, memo: HashMemo | None) -> tuple[str, int]:
    if memo is None:
        return sha256_file(path)
    return memo.sha256(path), path.stat().st_size


def verify_zip(path: Path, exp: Expectation, memo: HashMemo | None = None) -> ZipReport:
    """Check a zip holds exactly the expected files with the expected bytes."""
    seen, stamps = read_zip(path)
    problems = compare(seen, exp)
    if exp.epoch is not None:
        # A zip entry holds local time in 2-second steps from 1980; the writer clamps and rounds the epoch so.
        problems += date_problems(stamps, zip_time(exp.epoch))
    if problems:
        raise VerifyError(f"{path.name}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
                          "rebuild the media")
    digest, size = _file_hash(path, memo)
    return ZipReport(zip=path.name, sha256=digest, size=size, files_checked=len(seen))

"""The service stage: a Windows 7 install ISO (or its WIMs) with the staged drivers, certificates and test mode inside.

The user's ISO is never modified: its WIMs and BCD stores are copied into
``build/<spec>/service/``, edited there (hives with hivex, images with wimlib, every
edit from the one table in :mod:`.edits`), and the ISO is rebuilt around them with
its El Torito records replayed. ``dist/<spec>/install-media/`` (the ISO, the two
WIMs and ``servicing.json``, which lists every change) is published as one set.

Each install image's recovery image (``Windows\\System32\\Recovery\\winre.wim``, a
Windows PE that boots from the installed disk) gets the boot-critical storage and
certificate edits too, as Aero's ``tools/windows/patch-win7-media.ps1 -PatchNestedWinRE``
does: it is extracted with the image's hives, serviced image by image, and put back in
the same ``wimlib-imagex update`` as the hives. Editions share one ``winre.wim`` on a
DVD (one blob, known by the SHA-1 wimlib keeps): it is serviced once and the same
bytes go into each, so install.wim still stores it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import log
from ..answer import answerfile
from ..errors import PipelineError, SourceError, ToolError, UsageError
from ..fsutil import (
    HASH_CHUNK,
    copy_range,
    dump_json,
    not_a_file,
    relpath_for_humans,
    remove_tree,
    sha256_file,
    staging_dir,
    write_bytes_atomic,
)
from ..hashmemo import HashMemo, stat_key
from ..manifests import StageManifest
from ..media.contents import stage_manifests
from ..media.files import Spliced
from ..paths import MediaLayout, Run, SpecPaths
from ..sources.isoread import IsoTree
from ..spec.model import Spec
from ..spec.types import Arch
from . import bcd, hive, identity, isorepack, readme, wim, wimsparse
from .edits import (
    REGISTRY_RULES,
    Addition,
    DriverPackage,
    FileAdd,
    HiveFile,
    ImageKind,
    Options,
    ScriptAdd,
    file_additions,
    hives_for,
    registry_edits,
)
from .isorepack import IsoReport, read_report, repack
from .wimsparse import SparseWim

SCHEMA = 1
BOOT_WIM = "sources/boot.wim"
INSTALL_WIM = "sources/install.wim"
# The DVD's own BCD stores: those the edits table has rules for (copied out even when no rule applies,
# so the record lists them).
MEDIA_BCDS = tuple(dict.fromkeys(r.hive for r in REGISTRY_RULES if ImageKind.MEDIA in r.images))
# What a Windows 7 DVD must hold for its rebuilt ISO to install.
REQUIRED = ("setup.exe", BOOT_WIM, INSTALL_WIM)
WINRE = "Windows/System32/Recovery/winre.wim"
"""The recovery image inside an install image."""
WINRE_SHOWN = WINRE.replace("/", "\\")
MAX_SCRIPT = 1024 * 1024
"""Largest SetupComplete.cmd an image may already have (ours appends a few lines to it in memory)."""
WORK_MARKER = ".aero-media-service"
"""Written into the work folder when the stage makes it: only a folder that holds it is ever emptied."""
# What the stage itself puts in its work folder (a folder from before the marker existed is known by these alone):
# the ISO's copied files, the WIM copies (and their temp siblings), one folder per serviced image.
_WORK_NAMES = re.compile(r"input|(?:boot|install)\.wim|\.(?:boot|install)\.wim\..+|(?:boot|install)-\d+")


@dataclass(frozen=True)
class Inputs:
    """Where the WIMs (and, for an ISO, the media BCD stores) were copied to, and the ISO itself."""

    iso: Path | None
    boot_wim: Path
    install_wim: Path
    media_bcds: dict[HiveFile, Path]
    iso_hash: IsoHash | None = None
    """The ISO's sha256 being hashed beside the servicing (None: the memo knows it, or no ISO)."""
    report: IsoReport | None = None
    """The ISO's volume label, file systems and boot entries, read once for the warnings and the rebuild."""
    sparse: dict[Path, SparseWim] = field(default_factory=dict)
    """The WIMs copied sparsely (by working copy): only what wimlib reads, the rest read from the ISO at the end."""


def _sha256_pin(path: Path, want: str | None, where: str, spec: Spec, memo: HashMemo, known: str | None) -> str:
    # Hashed as the WIMs were copied out (``known``), else through the memo: doit's checker hashes this
    # file_dep too, and it is gigabytes.
    if known is not None:
        digest = known
    else:
        meter = log.Progress(f"hash {path.name}", path.stat().st_size)
        digest = memo.sha256(path, meter.advance)
        meter.close()  # its last line: a log shows the hash ended, as every other step's does
    if want is not None and digest != want.lower():
        raise SourceError(f"{where}: {path.name} has sha256 {digest}, but install_media.sha256 pins {want}",
                          f"point {spec.vocabulary.name('install_media.path')} at the pinned ISO, "
                          "or update the pin if this one is right")
    return digest


def _copy_inputs(spec: Spec, work: Path, memo: HashMemo) -> Inputs:
    """Copy the WIMs and BCD stores out (the ISO is only ever read), after checking there is room."""
    media = spec.install_media
    assert media is not None
    if media.iso is None:
        assert media.boot_wim is not None and media.install_wim is not None
        for p, setting in ((media.boot_wim, "install_media.boot_wim"),
                           (media.install_wim, "install_media.install_wim")):
            if not p.is_file():
                # Only a spec file names WIMs (no command has a flag for them).
                raise SourceError(f"{spec.display}: {setting}: {p}: {not_a_file(p, 'a WIM')}",
                                  "fix the WIM's path")
        wim.require_space(work, media.boot_wim.stat().st_size + media.install_wim.stat().st_size + wim.MARGIN,
                          "working copies of the WIMs")
        work.mkdir(parents=True, exist_ok=True)
        # Named by role, not by the user's file names: two WIMs both called image.wim stay apart.
        return Inputs(None, wim.working_copy(media.boot_wim, work, name="boot.wim"),
                      wim.working_copy(media.install_wim, work, name="install.wim"), {})
    if not media.iso.is_file():
        what = not_a_file(media.iso, "an ISO file")
        raise SourceError(f"{spec.display}: {spec.vocabulary.name('install_media.path')} {media.iso_raw}: {what}",
                          f"point {spec.vocabulary.name('install_media.path')} at a Windows 7 ISO")
    with IsoTree.open_path(media.iso, media.iso.name) as tree:
        entries = {e.path.lower(): e for e in tree.entries()}
        missing = [p for p in REQUIRED if p not in entries]
        if missing:
            raise SourceError(f"{media.iso.name}: no {', '.join(missing)}: not a Windows 7 install DVD",
                              f"give {spec.vocabulary.name('install_media.path')} a Windows 7 ISO "
                              "(with sources\\boot.wim and install.wim)")
        wanted = [BOOT_WIM, INSTALL_WIM, *(b.value.lower() for b in MEDIA_BCDS if b.value.lower() in entries)]
        too_big = [w for w in wanted if entries[w].size >= isorepack.MAX_FILE]
        if too_big:
            # Read fine (the DVD stores it in several extents, as ISO 9660 level 3 does for a file of 4 GiB or
            # more), but the rebuilt ISO could not carry it: say so before gigabytes are copied and serviced.
            raise SourceError(f"{media.iso.name}: {too_big[0]} is {entries[too_big[0]].size} bytes, stored in "
                              "several extents, and the rebuilt ISO cannot carry a file of 4 GiB or more",
                              "export only the editions you need into a smaller install.wim (wimlib-imagex "
                              "export), rebuild the ISO with it and service that")
        wim.require_space(work, sum(entries[w].size for w in wanted) + wim.MARGIN,
                          f"copying the WIMs of {media.iso.name}")
        out = {rel: work / "input" / rel for rel in wanted}
        for dest in out.values():
            dest.parent.mkdir(parents=True, exist_ok=True)
        # Hashed from end to end (unless the memo knows it) on a thread while the WIMs' extents are copied and
        # the images serviced; the copy finds in the page cache what the hash read, or the other way round.
        hashing = IsoHash(media.iso, memo) if memo.lookup(media.iso, media.iso.stat()) is None else None
        extents = {rel: entries[rel].ref.extents for rel in wanted}  # type: ignore[attr-defined]
        sparse = {out[rel]: s for rel in (BOOT_WIM, INSTALL_WIM)
                  if (s := _sparse_copy(media.iso, extents[rel], out[rel])) is not None}
        _copy_out(media.iso, {out[rel]: extents[rel] for rel in wanted if out[rel] not in sparse})
        for dest in out.values():
            dest.chmod(0o644)
    return Inputs(media.iso, out[BOOT_WIM], out[INSTALL_WIM],
                  {b: out[b.value.lower()] for b in MEDIA_BCDS if b.value.lower() in out}, hashing,
                  read_report(media.iso), sparse)


def _publish_wims(inputs: Inputs, paths: SpecPaths, out: Path) -> None:
    """Move the serviced WIMs into ``out`` (not copied: the working copies go away with the work folder)."""
    for w, published in zip((inputs.boot_wim, inputs.install_wim), paths.serviced_wims, strict=True):
        if w in inputs.sparse:
            inputs.sparse[w].fill()  # the bytes it left in the ISO, now in the file itself
        os.replace(w, out / published.name)


def _serviced_wim(inputs: Inputs, local: Path) -> Path | Spliced:
    """What the rebuilt ISO carries for a serviced WIM: the working copy, or a sparse one spliced with the ISO."""
    copy = inputs.sparse.get(local)
    if copy is None:
        return local
    try:
        return Spliced(tuple(copy.splice()))
    except ValueError as exc:
        raise ToolError(f"{local.name}: the serviced WIM cannot be put together: {exc}",
                        "report it with the WIM's header (wimlib-imagex info --header)") from None


def _sparse_copy(iso: Path, extents: tuple[tuple[int, int], ...], dest: Path) -> SparseWim | None:
    """A sparse working copy of the WIM at ``extents`` of ``iso`` (:mod:`.wimsparse`), or None for a whole copy.

    None when the WIM is one :func:`wimsparse.plan` cannot vouch for, or the work folder's
    file system does not keep holes; the caller then copies it whole, as any WIM used to be.
    """
    size = sum(n for _, n in extents)
    with open(iso, "rb", buffering=0) as fp:
        def read(offset: int, length: int) -> bytes:
            pieces, at = [], 0
            for start, n in extents:  # the WIM's bytes offset..offset+length, through its extents
                lo, hi = max(offset, at), min(offset + length, at + n)
                if lo < hi:
                    pieces.append(os.pread(fp.fileno(), hi - lo, start + lo - at))
                at += n
            return b"".join(pieces)

        layout = wimsparse.plan(read(0, wimsparse.HEADER_SIZE), read, size)
    if isinstance(layout, str):
        return None
    copy = wimsparse.SparseWim(iso, extents, dest, layout)
    if not copy.holds_only_what_was_copied():
        dest.unlink()
        return None
    return copy


class IsoHash:
    """An ISO's sha256, hashed front to back on a thread of its own while the caller goes on.

    Servicing copies the WIMs out and services the images meanwhile (the read and
    hashlib let go of the interpreter lock; wimlib and hivexregedit are processes of
    their own). :meth:`result` waits, with a progress line while it does, and records
    the digest in the memo, so doit's checker does not hash the ISO again. The thread
    is a daemon that ends when the file is read, so after an error elsewhere it runs out
    by itself.
    """

    def __init__(self, iso: Path, memo: HashMemo) -> None:
        self._iso, self._memo = iso, memo
        self._before = iso.stat()
        self._done = 0
        self._digest: str | None = None
        self._error: PipelineError | None = None
        self._thread = threading.Thread(target=self._run, name="iso-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        size, sha = self._before.st_size, hashlib.sha256()
        try:
            with open(self._iso, "rb", buffering=0) as src:
                while self._done < size:
                    chunk = src.read(min(HASH_CHUNK, size - self._done))
                    if not chunk:
                        raise SourceError(f"{self._iso.name} ended at byte {self._done}, before its size said",
                                          "the ISO changed while it was read: service it again")
                    sha.update(chunk)
                    self._done += len(chunk)
            self._digest = sha.hexdigest()
        except OSError as exc:
            self._error = SourceError(f"{self._iso.name}: cannot read it ({exc.strerror})", "check the ISO")
        except PipelineError as exc:
            self._error = exc

    def result(self) -> str:
        """The sha256 (waiting for the thread, with a progress line, when it is not done)."""
        if self._thread.is_alive():
            progress = log.Progress(f"hash {self._iso.name}", self._before.st_size)
            while self._thread.is_alive():
                progress(self._done)
                self._thread.join(0.2)
            progress(self._done)
            progress.close()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        if stat_key(self._iso, self._iso.stat()) == stat_key(self._iso, self._before):
            self._memo.record(self._iso, self._before, self._digest)  # doit's checker, in another process
        return self._digest


def _copy_out(iso: Path, files: dict[Path, tuple[tuple[int, int], ...]]) -> None:
    """Copy each file's extents (offset, length in ``iso``) to its path, inside the kernel (``fsutil.copy_range``)."""
    pieces = sorted((offset, length, dest, at) for dest, extents in files.items()
                    for at, (offset, length) in zip(itertools.accumulate((n for _, n in extents), initial=0),
                                                    extents, strict=False))
    progress = log.Progress(f"copy {iso.name}", sum(n for _, n, _, _ in pieces))
    with contextlib.ExitStack() as stack:
        fds = {dest: stack.enter_context(open(dest, "wb")) for dest in files}
        src = stack.enter_context(open(iso, "rb", buffering=0))
        for offset, n, dest, at in pieces:
            if copy_range(src.fileno(), fds[dest].fileno(), offset, n, at, progress.advance) < n:
                raise SourceError(f"{iso.name} ended before the extents its tree names",
                                  "the ISO is truncated: download it again")
    progress.close()


def _owned_work(work: Path, root: Path, where: str) -> None:
    """Refuse to empty a work folder this stage did not make (it might hold the user's files)."""
    if not work.exists() and not work.is_symlink():
        return
    if work.is_dir() and not work.is_symlink():
        if (work / WORK_MARKER).is_file():
            return
        names = [p.name for p in work.iterdir()]
        if all(_WORK_NAMES.fullmatch(n) for n in names):
            return
        stray = "it holds " + next(n for n in sorted(names) if not _WORK_NAMES.fullmatch(n))
    else:
        stray = "it is not a folder"
    raise UsageError(f"{where}: {relpath_for_humans(work, root)} was not made by this tool ({stray}), so it is "
                     "not emptied",
                     "move anything of yours out of it, delete it, and run again")


def _owned_outputs(paths: SpecPaths, filename: str, where: str) -> None:
    """Refuse to replace a published ``install-media/`` folder that holds anything this stage did not publish."""
    folder = paths.install_media_dir
    if not folder.exists() and not folder.is_symlink():
        return
    known = {paths.servicing_record.name, filename, *(w.name for w in paths.serviced_wims)}
    try:  # names an earlier run published (the ISO's file name may since have changed)
        record = json.loads(paths.servicing_record.read_bytes())
        known |= {str(o["path"]) for o in record["outputs"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    stray: Path | None = folder
    if folder.is_dir() and not folder.is_symlink():
        stray = next((p for p in sorted(folder.iterdir())
                      if p.name not in known or p.is_symlink() or not p.is_file()), None)
    if stray is not None:
        raise UsageError(f"{where}: {relpath_for_humans(stray, paths.ctx.root)} was not published by this tool, "
                         "and install-media/ is replaced as a whole", "move it out of dist/ and run again")


def _packages(spec: Spec, paths: SpecPaths, arch: Arch) -> list[DriverPackage]:
    if arch not in spec.arches:
        raise SourceError(f"{spec.display}: the Windows 7 image is {arch.value}, but the spec stages "
                          f"{', '.join(a.value for a in spec.arches)}",
                          f"add {arch.value} to target.arches" if not spec.vocabulary.from_command_line
                          else spec.vocabulary.fix("target.arches"))
    manifest = StageManifest.read(paths.stage_manifest(arch))
    return [DriverPackage(p.driver, arch, p.device, paths.stage_dir(arch) / p.driver, p.inf.rsplit("/", 1)[-1])
            for p in manifest.packages]


def _options(spec: Spec, paths: SpecPaths, stages: list[StageManifest], arch: Arch) -> Options:
    from ..media.certs import media_certs

    certs = media_certs(spec, paths, stages)
    media = spec.install_media
    return Options(certificates=certs.test, publishers=certs.trust,
                   testsigning=spec.signing_policy.certs_required and arch is Arch.AMD64,
                   nointegritychecks=media is not None and media.nointegritychecks)


def _arch_names(found: list[wim.WimImage]) -> str:
    return ", ".join(sorted({i.arch.value if i.arch else f"ARCH {i.arch_code}" if i.arch_code is not None
                             else "without ARCH" for i in found}))


def _one_arch(found: list[wim.WimImage], name: str) -> Arch:
    """The one architecture of a WIM's images (Windows 7 install.wim files hold one)."""
    if not found:
        raise SourceError(f"{name} has no images", f"give the {name} of a Windows 7 DVD")
    arches = {i.arch for i in found}
    if len(arches) != 1 or None in arches:
        raise SourceError(f"{name}: its images are {_arch_names(found)}, not all x86 or all x64",
                          f"give a Windows 7 x86 or x64 {name}")
    arch = next(iter(arches))
    assert arch is not None
    return arch


def _selected(found: list[wim.WimImage], wanted: tuple[int, ...] | None, what: str,
              where: str) -> list[wim.WimImage]:
    if wanted is None:
        return found
    by_index = {i.index: i for i in found}
    absent = [i for i in wanted if i not in by_index]
    if absent:
        raise UsageError(f"{where}: install_media.{what}: {what.split('_')[0]}.wim has no image "
                         f"{', '.join(map(str, absent))} (it has {', '.join(str(i.index) for i in found)})",
                         f"fix install_media.{what}")
    return [by_index[i] for i in wanted]


def _kind(image: wim.WimImage, boot: bool) -> ImageKind:
    if not boot:
        return ImageKind.INSTALL
    return ImageKind.SETUP if image.boot else ImageKind.WINPE


def _file_records(folder: Path, dest: str) -> list[dict[str, Any]]:
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    out = []
    for f in files:
        rel = dest if folder.is_file() else f"{dest}/{f.relative_to(folder).as_posix()}"
        digest, size = sha256_file(f)
        out.append({"path": rel, "sha256": digest, "size": size})
    return out


def _check_distinct_wims(spec: Spec) -> None:
    """Before anything is copied: the WIM pair must be two files."""
    media = spec.install_media
    if media is not None and media.boot_wim is not None and media.install_wim is not None:
        identity.check_two_files(media.boot_wim, media.install_wim, "install_media.boot_wim",
                                 "install_media.install_wim")


def _check_media(inputs: Inputs, options: Options) -> None:
    """The DVD's BCD stores are BCD stores; warn of what will not boot (no El Torito record, a missing store)."""
    if inputs.iso is None:
        return
    for store, local in inputs.media_bcds.items():
        identity.check_hive(local, store, f"{inputs.iso.name}, {identity.store_name(store)}")
    report = inputs.report or read_report(inputs.iso)  # read once when the copy read it
    for line in identity.media_warnings(inputs.iso.name, len(report.boot_entries), MEDIA_BCDS,
                                        tuple(inputs.media_bcds), options.testsigning):
        log.warn(line)


def _identity_hives(hives: tuple[HiveFile, ...]) -> tuple[HiveFile, ...]:
    """The hives to extract: those with edits, and SOFTWARE, which says which Windows the image really is."""
    return hives if HiveFile.SOFTWARE in hives else (*hives, HiveFile.SOFTWARE)


@dataclass(frozen=True)
class _Serviced:
    """A recovery image already serviced in this run: the file to put back, and what was done to it."""

    local: Path
    record: dict[str, Any]


def _service_recovery(spec: Spec, local: Path, where: str, arch: Arch, work: Path, packages: list[DriverPackage],
                      options: Options) -> dict[str, Any]:
    """Service every image of an extracted ``winre.wim`` in place (``where`` names it); return its record."""
    if not local.is_file() or local.stat().st_size == 0:
        raise SourceError(f"{where} is {'empty' if local.is_file() else 'not a file'}",
                          f"use an intact Windows 7 image, or {spec.vocabulary.fix('install_media.winre', 'false')}")
    try:
        found = wim.images(local)
    except PipelineError as exc:
        said = exc.message.replace(os.fspath(local), WINRE_SHOWN).replace(os.fspath(work), "…")
        raise SourceError(f"{where} is not a readable WIM ({said})",
                          f"use an intact Windows 7 image, or {spec.vocabulary.fix('install_media.winre', 'false')}"
                          ) from None
    wim.check_windows7(found, arch, where)
    images = [_service_image(spec, local, i, ImageKind.RECOVERY, work, packages, options, label=where) for i in found]
    return {"path": WINRE_SHOWN, "serviced": True, "images": images}


def _changed(record: dict[str, Any]) -> bool:
    """Whether servicing changed anything in a recovery image (else the original stays)."""
    images = record["images"]
    return any(r["changed"] for i in images for r in i["registry"]) or any(i["files"] for i in images)


def _recovery_serviced(spec: Spec, digest: str, done: dict[str, _Serviced], here: Path, where: str, arch: Arch,
                       packages: list[DriverPackage], options: Options) -> _Serviced:
    """The serviced recovery image of content ``digest``: the one serviced for an earlier edition, else this one's."""
    if digest not in done:
        # Extracted with the hives (see _service_image).
        local = wim.find_case_insensitive(here / "hives", WINRE) or here / "hives" / WINRE
        done[digest] = _Serviced(local, _service_recovery(spec, local, f"{where}, {WINRE_SHOWN}", arch,
                                                          here / "recovery", packages, options))
    return done[digest]


def _left_alone(spec: Spec, images: list[dict[str, Any]]) -> None:
    """Record in each install image's record that the settings leave its recovery image as it is."""
    for image in images:
        if image["kind"] == ImageKind.INSTALL.value:
            image["recovery"] = {"path": WINRE_SHOWN, "serviced": False,
                                 "why": f"{spec.vocabulary.term('install_media.winre', 'false')} leaves it as it is"}


def _recovery(image_wim: Path, image: wim.WimImage, where: str) -> tuple[str | None, dict[str, Any] | None]:
    """The content hash of the image's ``winre.wim`` to service, or (None and) the record saying it has none."""
    digest = wim.content_hash(image_wim, image.index, WINRE)
    if digest is None:
        # Windows 7 installs and boots without one; Setup simply has no recovery image to register.
        return None, {"path": WINRE_SHOWN, "serviced": False, "why": f"{where} has no {WINRE_SHOWN}"}
    return digest, None


def _fetch(sparse: SparseWim | None, image_wim: Path, index: int, paths: list[str],
           known: tuple[str, ...] = ()) -> None:
    """Copy the data of ``paths`` of image ``index`` into a sparse working copy, before wimlib reads it.

    ``known``: SHA-1s already read from the image's metadata (the recovery image's), not looked up again.
    """
    if sparse is not None:
        sparse.fetch_blobs([*wim.data_hashes(image_wim, index, paths), *known])


@dataclass(frozen=True)
class _Taken:
    """What servicing took out of one image before its WIM is updated: the reads that phase makes.

    Reading an image and updating another of the same WIM must not overlap (wimlib updates
    it in place), so an install.wim's images are all read first; their hive edits (no WIM
    involved) then run beside the updates (:func:`_service_images`).
    """

    where: str
    here: Path
    hives: tuple[HiveFile, ...]
    checked: tuple[HiveFile, ...]
    adds: tuple[Addition, ...]
    scripts: dict[str, Path | None]
    """Each ``SetupComplete.cmd`` the image already has (None: it has none)."""
    digest: str | None
    recovery_record: dict[str, Any] | None


def _take(spec: Spec, image_wim: Path, image: wim.WimImage, kind: ImageKind, work: Path, packages: list[DriverPackage],
          options: Options, *, label: str | None, recovery: dict[str, _Serviced] | None, planned: set[str],
          sparse: SparseWim | None) -> _Taken:
    """Read what servicing ``image`` needs out of ``image_wim``: its hives, recovery image, setup script.

    ``planned``: recovery images (by content hash) an earlier image of this run takes out; this
    one takes its own only when none has (a DVD's editions share one).
    """
    where = f"{label or image_wim.name} {image.describe()}"
    here = work / f"{image_wim.stem}-{image.index}"
    remove_tree(here)
    hives = hives_for(kind, spec.contract, options)
    checked = _identity_hives(hives)
    digest, recovery_record = _recovery(image_wim, image, where) \
        if kind is ImageKind.INSTALL and recovery is not None else (None, None)
    fresh = digest is not None and recovery is not None and digest not in recovery and digest not in planned
    if fresh:
        assert digest is not None
        planned.add(digest)
    # One extract for the hives and (when not taken already) the recovery image.
    hive_paths = [h.value for h in checked]
    _fetch(sparse, image_wim, image.index, hive_paths, (digest,) if fresh and digest else ())
    wim.extract(image_wim, image.index, hive_paths + ([WINRE] if fresh else []), here / "hives", missing_ok=True)
    adds = file_additions(kind, spec.contract, image.arch or Arch.AMD64, options, packages)
    scripts: dict[str, Path | None] = {}
    for add in adds:
        if isinstance(add, ScriptAdd):
            _fetch(sparse, image_wim, image.index, [add.dest])
            old = wim.extract(image_wim, image.index, [add.dest], here / "script", missing_ok=True)
            scripts[add.dest] = old[0] if old else None
    return _Taken(where, here, hives, checked, adds, scripts, digest, recovery_record)


def _edit(spec: Spec, image_wim: Path, image: wim.WimImage, kind: ImageKind, took: _Taken,
          packages: list[DriverPackage], options: Options,
          recovery: dict[str, _Serviced] | None) -> tuple[list[wim.Command], dict[str, Any]]:
    """Edit the hives :func:`_take` took out and prepare the files to add: the update's commands, the record."""
    contract, where, here = spec.contract, took.where, took.here
    extracted = {h: wim.find_case_insensitive(here / "hives", h.value) for h in took.hives}
    identity.check_image_hives({h: wim.find_case_insensitive(here / "hives", h.value) for h in took.checked},
                               image, where)
    registry: list[dict[str, Any]] = []
    commands: list[wim.Command] = []
    # hivexregedit prints no progress of its own: a line now and then says the step is alive.
    with log.working(f"edit hives of {where}"):
        for h in took.hives:
            path = extracted[h]
            if path is None or not path.is_file():
                raise SourceError(f"{where}: no {h.value} file", "this is not a Windows 7 image")
            try:
                ccs = hive.current_control_set(path) if h is HiveFile.SYSTEM else None
                objects = tuple(t.guid for t in bcd.targets(path)) if h.is_bcd else ()
                changes = hive.apply(path, registry_edits(kind, h, contract, options, control_set=ccs,
                                                          bcd_objects=objects))
            except PipelineError as exc:
                # Name the image and hive, never our working copy's path.
                said = exc.message.replace(os.fspath(path), h.value).replace(os.fspath(here), "…")
                raise type(exc)(f"{where}, {h.value}: {said}", exc.hint or "use an intact Windows 7 image") from None
            registry += [{"hive": h.value, **c.record()} for c in changes]
            if any(c.changed for c in changes):
                commands.append(wim.Add(path, h.value))
    files: list[dict[str, Any]] = []
    for add in took.adds:
        if isinstance(add, ScriptAdd):
            old = took.scripts.get(add.dest)
            if old is not None and not old.is_file():
                raise SourceError(f"{where}: {add.dest} is not a file", "use an intact Windows 7 image")
            if old is not None and old.stat().st_size > MAX_SCRIPT:
                raise SourceError(f"{where}: {add.dest} is {old.stat().st_size} bytes, "
                                  "far more than a setup script holds", "use an intact Windows 7 image")
            text = add.render(old.read_bytes() if old is not None else None)
            local = here / "SetupComplete.cmd"
            write_bytes_atomic(local, text)
            commands.append(wim.Add(local, add.dest))
            files.append({"path": add.dest, "sha256": hashlib.sha256(text).hexdigest(), "size": len(text)})
        else:
            assert isinstance(add, FileAdd)
            commands.append(wim.Add(add.source, add.dest))
            files += _file_records(add.source, add.dest)
    recovery_record = took.recovery_record
    if took.digest is not None and recovery is not None:
        serviced = _recovery_serviced(spec, took.digest, recovery, here, where, image.arch or Arch.AMD64, packages,
                                      options)
        recovery_record = {**serviced.record, "source_sha1": took.digest}
        if _changed(serviced.record):
            commands.append(wim.Add(serviced.local, WINRE))
            files += _file_records(serviced.local, WINRE)
    record: dict[str, Any] = {"wim": image_wim.name, "index": image.index, "name": image.name, "kind": kind.value,
                              "version": image.version, "arch": image.arch.value if image.arch else None,
                              "registry": registry, "files": files}
    if recovery_record is not None:
        record["recovery"] = recovery_record
    return commands, record


def _service_image(spec: Spec, image_wim: Path, image: wim.WimImage, kind: ImageKind, work: Path,
                   packages: list[DriverPackage], options: Options, *, label: str | None = None,
                   sparse: SparseWim | None = None) -> dict[str, Any]:
    """Edit one image's hives and add its files, in one ``wimlib-imagex update``; return its record.

    ``label`` names the WIM in messages (default: its file name). ``sparse``: ``image_wim``
    is a sparse working copy, into which what is extracted is copied first. (An install
    image, whose recovery image is serviced too, goes through :func:`_service_images`.)
    """
    took = _take(spec, image_wim, image, kind, work, packages, options, label=label, recovery=None, planned=set(),
                 sparse=sparse)
    commands, record = _edit(spec, image_wim, image, kind, took, packages, options, None)
    wim.update(image_wim, image.index, commands)
    return record


def _service_images(spec: Spec, inputs: Inputs, boot_selected: list[wim.WimImage],
                    install_selected: list[wim.WimImage], work: Path, packages: list[DriverPackage],
                    options: Options, recovery: dict[str, _Serviced] | None) -> list[dict[str, Any]]:
    """Service the selected images of both WIMs; their records, boot.wim's first."""
    with log.working(f"service {len(boot_selected) + len(install_selected)} images") as overall:

        def boot_side() -> list[dict[str, Any]]:
            return [_service_image(spec, inputs.boot_wim, i, _kind(i, True), work, packages, options,
                                   sparse=inputs.sparse.get(inputs.boot_wim)) for i in boot_selected]

        # boot.wim and install.wim are two files, so their images are serviced side by side (the work is mostly
        # hivexregedit's and wimlib's, in processes of their own). One WIM's images are read first, then each
        # image's hive edits run while the previous image's update writes: wimlib updates a WIM in place, so
        # nothing reads it during an update, and the updates go in turn.
        sparse = inputs.sparse.get(inputs.install_wim)
        with ThreadPoolExecutor(1, thread_name_prefix="boot.wim") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="edits") as edits:
            boot_done = pool.submit(boot_side)
            planned: set[str] = set()
            taken = [_take(spec, inputs.install_wim, i, ImageKind.INSTALL, work, packages, options, label=None,
                           recovery=recovery, planned=planned, sparse=sparse) for i in install_selected]
            # One thread edits in image order, so a recovery image shared by editions is serviced once, first.
            edited = [edits.submit(_edit, spec, inputs.install_wim, i, ImageKind.INSTALL, took, packages, options,
                                   recovery) for i, took in zip(install_selected, taken, strict=True)]
            installs = []
            try:
                for n, (i, done) in enumerate(zip(install_selected, edited, strict=True), 1):
                    overall.tell(f"install.wim image {i.index} ({n} of {len(install_selected)})")
                    commands, record = done.result()
                    wim.update(inputs.install_wim, i.index, commands)
                    installs.append(record)
            except BaseException:
                for f in edited:  # the images after a failure are not edited
                    f.cancel()
                raise
            return boot_done.result() + installs


def _hash_output(path: Path) -> str:
    progress = log.Progress(f"hash {path.name}", path.stat().st_size)
    digest = sha256_file(path, progress.advance)[0]
    progress.close()
    return digest


def service_media(run: Run) -> dict[str, Any]:
    """The service task: write ``dist/<spec>/install-media/`` (ISO, boot.wim, install.wim, servicing.json).

    ``install_media.publish_wims`` false leaves the patched WIMs out (a command that delivers the ISO alone).
    """
    spec, ctx, paths, epoch, memo = run.spec, run.ctx, run.paths, run.epoch, run.memo
    media = spec.install_media
    assert media is not None
    work = paths.service_work
    wim.require_plain_path(work)
    _check_distinct_wims(spec)
    # Before anything is removed: the work folder is emptied and install-media/ replaced as a whole.
    _owned_outputs(paths, media.filename, spec.display)
    _owned_work(work, ctx.root, spec.display)
    answerfile.preflight(spec)
    remove_tree(work)
    work.mkdir(parents=True)
    (work / WORK_MARKER).write_bytes(b"")
    inputs = _copy_inputs(spec, work, memo)
    source: dict[str, Any] = {} if inputs.iso is None else {"iso": inputs.iso.name}  # its sha256 once hashed
    boot_images = wim.images(inputs.boot_wim)
    install_images = wim.images(inputs.install_wim)
    identity.check_wim_roles(boot_images, install_images)
    arch = _one_arch(install_images, "install.wim")
    boot_arches = {i.arch for i in boot_images}
    if boot_images and arch not in boot_arches and len(boot_arches) == 1 and None not in boot_arches:
        raise SourceError(f"boot.wim is {_arch_names(boot_images)} but install.wim is {arch.value}: the two come "
                          "from different DVDs", "service the boot.wim and install.wim of one Windows 7 DVD")
    wim.check_windows7(boot_images, arch, "boot.wim")
    wim.check_windows7(install_images, arch, "install.wim")
    packages = _packages(spec, paths, arch)
    stages = stage_manifests(spec, paths)
    options = _options(spec, paths, stages, arch)
    _check_media(inputs, options)
    recovery: dict[str, _Serviced] | None = {} if media.winre else None
    images = _service_images(spec, inputs, _selected(boot_images, media.boot_images, "boot_images", spec.display),
                             _selected(install_images, media.install_images, "install_images", spec.display),
                             work, packages, options, recovery)
    if inputs.iso is not None:
        # The pin is checked here, once the hash that ran beside the servicing is done: nothing is published yet.
        source["sha256"] = _sha256_pin(inputs.iso, media.sha256, spec.display, spec, memo,
                                       inputs.iso_hash.result() if inputs.iso_hash else None)
    if recovery is None:
        _left_alone(spec, images)
    record: dict[str, Any] = {"schema_version": SCHEMA, "spec": spec.name, "source": source, "arch": arch.value,
                              "source_date_epoch": epoch,
                              "options": {"winre": media.winre, "testsigning": options.testsigning,
                                          "nointegritychecks": options.nointegritychecks},
                              "answer_file": None,  # beside the options; filled in below when one is written
                              "images": images, "media_bcd": [], "winpe_drivers": []}
    written: dict[str, str] = {}  # sha256 of what was hashed as it was written (the ISO)
    with staging_dir(paths.install_media_dir) as out:
        if inputs.iso is not None:
            changes: dict[str, Path | bytes | Spliced] = {BOOT_WIM: _serviced_wim(inputs, inputs.boot_wim),
                                                          INSTALL_WIM: _serviced_wim(inputs, inputs.install_wim)}
            media_hives = hives_for(ImageKind.MEDIA, spec.contract, options)
            for store, local in inputs.media_bcds.items():
                label = f"{inputs.iso.name}, {identity.store_name(store)}"
                with log.working(f"edit {label}"):
                    edits = registry_edits(ImageKind.MEDIA, store, spec.contract, options,
                                           bcd_objects=tuple(t.guid for t in bcd.targets(local, label))) \
                        if store in media_hives else ()
                    done = hive.apply(local, edits, label)
                record["media_bcd"] += [{"hive": store.value, **c.record()} for c in done]
                if any(c.changed for c in done):
                    changes[store.value] = local
            if spec.media.winpe_drivers.carried(1):  # the image is one arch's: per-arch puts it here too
                for pkg in packages:
                    dest = MediaLayout.WINPE.driver_dir(arch, pkg.name)
                    changes[dest] = pkg.folder
                    record["winpe_drivers"] += _file_records(pkg.folder, dest)
            answer, record["answer_file"] = answerfile.for_media(spec, arch, {p.name: p.folder for p in packages})
            changes.update(answer)
            # Rendered from the record so far (everything but the outputs), so the two cannot disagree.
            notes = work / readme.NAME
            write_bytes_atomic(notes, readme.render(record, spec.vocabulary))
            changes[readme.NAME] = notes
            record["readme"] = {"path": readme.NAME, "sha256": sha256_file(notes)[0], "size": notes.stat().st_size}
            result = repack(inputs.iso, out / media.filename, changes, epoch=epoch, require=REQUIRED,
                            before=inputs.report, digests=(BOOT_WIM, INSTALL_WIM) if media.publish_wims else ())
            written[media.filename] = result.sha256
            # The published WIMs are the bytes the ISO carries, hashed as they were written into it.
            written.update({p.name: result.digests[w] for w, p in zip((BOOT_WIM, INSTALL_WIM), paths.serviced_wims,
                                                                        strict=True) if w in result.digests})
            record["file_systems"] = {"input": list(result.before.filesystems.names()),
                                      "output": list(result.after.filesystems.names()),
                                      "dropped": list(result.dropped)}
            record["boot_entries"] = [{"platform": e.platform, "emulation": e.emulation,
                                       "sectors": e.sector_count, "image_sha256": e.image_sha256}
                                      for e in result.after.boot_entries]
        if media.publish_wims:
            _publish_wims(inputs, paths, out)
        # WIMs carry a GUID and times wimlib sets when it writes: not byte-reproducible (contents are).
        record["outputs"] = [{"path": p.name, "sha256": written.get(p.name) or _hash_output(p),
                               "size": p.stat().st_size}
                             for p in sorted(out.iterdir()) if p.is_file()]
        write_bytes_atomic(out / paths.servicing_record.name, dump_json(record))
    # Remember the published files by stat, so the next run can tell an edited one without hashing gigabytes.
    for o in record["outputs"]:
        final = paths.install_media_dir / o["path"]
        memo.record(final, final.stat(), o["sha256"])
    _owned_work(work, ctx.root, spec.display)
    remove_tree(work)
    changed = sum(1 for i in images for r in i["registry"] if r["changed"])
    log.info(f"serviced {len(images)} image(s) of {inputs.install_wim.name}/{inputs.boot_wim.name} ({arch.value}): "
             f"{changed} registry value(s) changed; wrote {relpath_for_humans(paths.install_media_dir, ctx.root)}")
    return record


def outputs_current(run: Run) -> bool:
    """Whether every file ``servicing.json`` lists is still what it published (judged by stat, hashed if changed).

    The published WIMs and ISO are gigabytes and nothing reads them back, so an edited,
    truncated or deleted one would otherwise stay wrong until the inputs change.
    """
    paths, memo = run.paths, run.memo
    try:
        record = json.loads(paths.servicing_record.read_bytes())
        outputs = [(paths.install_media_dir / o["path"], o["sha256"], o["size"]) for o in record["outputs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for path, digest, size in outputs:
        try:
            st = path.stat()
        except OSError:
            return False
        if st.st_size != size:
            return False
        if memo.sha256(path) != digest:
            return False
    return True


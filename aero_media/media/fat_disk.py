"""The FAT driver disk: a fixed VHD with one FAT32 partition, for a second hard disk beside Windows 7 Setup.

Layout (Aero's): ``x86\\<driver>\\``, ``x64\\<driver>\\``, ``$WinPEDriver$\\`` (when
``media.winpe_drivers`` puts it on a disk of its arches), ``INSTALL.TXT``, ``THIRD_PARTY_NOTICES.md``,
``licenses\\`` and, when the signing policy ships any, ``certs\\``. Written by our own FAT32 writer (every date the
build epoch) and read back by a reader that shares no code with it, plus
``fsck.fat -n`` when it is installed.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import BinaryIO

from .. import log, systools
from ..errors import VerifyError
from ..fsutil import CHUNK, relpath_for_humans, write_json_atomic
from ..manifests import FatDiskReport, FileRecord, NoticesManifest
from ..paths import MediaLayout, Run
from ..scratch import unnamed_file
from ..spec.model import Spec
from .certs import media_certs, medium_cert_files
from .contents import media_record, provenance, stage_manifests, staged_media
from .discard import discard_on_failure
from .fatread import FatContent, Partition, fat_partition, read_fat_disk, stamp_matches
from .fatwriter import write_fat_disk
from .files import MediaFile
from .notices import LICENSES
from .readme import media_packages, shared_values
from .templates import crlf, render
from .winpe import winpe_media

INSTALL_NAME = "INSTALL.TXT"
INSTALL_TEMPLATE = "fat-INSTALL.txt"
PARTITION_TYPE = 0x0C  # FAT32 with LBA
FIRST_SECTOR = 2048


def fat_disk_files(run: Run) -> tuple[list[MediaFile], list[FileRecord]]:
    """Every file of the disk and its record (nothing is written)."""
    spec, paths = run.spec, run.paths
    stages = stage_manifests(spec, paths)
    files, records = staged_media(paths, stages, NoticesManifest.read(paths.notices_manifest), MediaLayout.FAT_DISK)
    if spec.media.winpe_drivers.carried(len(stages)):
        more, more_records = winpe_media(spec, paths, stages)
        files += more
        records += more_records
    shipped = media_certs(spec, paths, stages)
    certs = shipped.shipped
    for media_path, der in medium_cert_files(shipped):
        files.append(MediaFile(media_path, data=der))
        records.append(media_record(media_path, der))
    values = shared_values(spec, media_packages(stages, MediaLayout.FAT_DISK), provenance(run, stages),
                           noun="disk", how="a second hard disk; it is a fixed VHD", drive="E:")
    certs_line = "  certs\\                 the certificates setup trusts for these drivers\n" if certs else ""
    # A pack's notices may carry no licence folder: list only what the disk holds.
    has_licenses = any(f.path.startswith(f"{LICENSES}/") for f in files)
    licenses_line = "  licenses\\              the licence texts\n" if has_licenses else ""
    text = crlf(render(INSTALL_TEMPLATE, {**values, "LABEL": spec.fat_disk.volume_label, "CERTS_LINE": certs_line,
                                          "LICENSES_LINE": licenses_line}))
    files.append(MediaFile(INSTALL_NAME, data=text))
    records.append(media_record(INSTALL_NAME, text))
    return files, records


def build_fat_disk(run: Run) -> FileRecord:
    """Write ``<filename>.vhd`` under ``build/<spec>/media/`` (publish puts it in dist/); return its record."""
    spec, ctx, paths = run.spec, run.ctx, run.pending
    target = paths.fat_disk
    paths.fat_disk_report.unlink(missing_ok=True)
    files, _records = fat_disk_files(run)
    info = write_fat_disk(files, target, spec.fat_disk.volume_label, run.epoch, spec.fat_disk.size_mib)
    # Hashed once: doit's checker and the verify step find the digest in the memo instead of reading 64 MiB again.
    digest = run.memo.sha256(target)
    size = target.stat().st_size
    if not ctx.scratch:  # a command building in a scratch project names the file where it finally lands
        shown = relpath_for_humans(target, ctx.root, absolute=True)
        log.info(f"Wrote {shown} ({info.size // (1024 * 1024)} MiB FAT32 disk, {info.files} files, sha256={digest})")
    return FileRecord(target.name, digest, size)


FSCK = "fsck.fat"
"""An independent oracle the build does not need: absent, the report says so."""


class _FsckBeside:
    """``fsck.fat -n`` on a thread, beside the independent reader: copying the partition out and the
    program itself run while Python walks the disk (a subprocess and file copies let go of the GIL).

    :meth:`result` or :meth:`wait` joins the thread on every path but an interrupt, so none outlives the verify.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._result: tuple[str, list[str]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"fsck {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = _fsck(self._path, fat_partition(self._path))
        except BaseException as exc:  # handed to the verify's thread by result()
            self._error = exc

    def wait(self) -> None:
        """Until fsck.fat is done (or failed)."""
        self._thread.join()

    def result(self) -> tuple[str, list[str]]:
        """Wait for fsck.fat; its verdict, or what stopped it raised."""
        self.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _fsck(path: Path, part: Partition) -> tuple[str, list[str]]:
    """Run ``fsck.fat -n`` on the partition when it is installed (an oracle the build does not need)."""
    if shutil.which(FSCK) is None:
        return "not installed", []
    # The partition copy has no name (fsck.fat opens /dev/fd/N): a killed run leaves nothing in $TMPDIR.
    with unnamed_file() as (fp, img):
        _copy_range(path, fp, part.first_lba * 512, part.sectors * 512)
        fp.flush()
        done = systools.run(FSCK, ["-n", str(img.path)], purpose="checking the FAT driver disk", timeout=300,
                            what="checking the FAT driver disk", ok_codes=None, pass_fds=(img.fd,))
    if done.returncode != 0:
        return "problems", [f"fsck.fat -n: {line}" for line in (done.out + done.err).splitlines()
                            if line.strip()][:10]
    return "clean", []


def _copy_range(src: Path, fout: BinaryIO, offset: int, length: int) -> None:
    """Copy ``length`` bytes of ``src`` from ``offset`` into the empty file ``fout``, keeping holes (the disk is
    mostly empty)."""
    with open(src, "rb") as fin:
        fout.truncate(length)
        pos, end = offset, offset + length
        while pos < end:
            try:
                data = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
                hole = min(os.lseek(fin.fileno(), data, os.SEEK_HOLE), end)
            except (OSError, AttributeError):  # no SEEK_DATA here: copy everything
                data, hole = pos, end
            if data >= end:
                break
            fin.seek(data)
            fout.seek(data - offset)
            left = hole - data
            while left:
                chunk = fin.read(min(CHUNK, left))
                if not chunk:
                    return
                fout.write(chunk)
                left -= len(chunk)
            pos = hole


def _problems(spec: Spec, content: FatContent, expected: dict[str, tuple[str, int]], epoch: int) -> list[str]:
    problems: list[str] = []
    part = content.partition
    if len(content.partitions) != 1 or part.type != PARTITION_TYPE or part.first_lba != FIRST_SECTOR:
        problems.append(f"the partition table is not one FAT32 (0x{PARTITION_TYPE:02X}) partition at sector "
                        f"{FIRST_SECTOR}: {[(p.type, p.first_lba) for p in content.partitions]}")
    if content.label != spec.fat_disk.volume_label or content.root_label != spec.fat_disk.volume_label:
        problems.append(f"volume label is {content.label!r} / {content.root_label!r}, "
                        f"expected {spec.fat_disk.volume_label!r}")
    if not (content.fats_match and content.backup_boot_matches and content.fsinfo_free == content.free_clusters):
        problems.append("the file system is inconsistent (FAT copies, backup boot sector or FSInfo free count)")
    for path, want in sorted(expected.items()):
        got = content.files.get(path)
        if got is None:
            problems.append(f"missing {path}")
        elif got != want:
            problems.append(f"{path}: sha256 {got[0]} size {got[1]} differs from the stage or notices manifest")
    problems += [f"unexpected file {p}" for p in sorted(set(content.files) - set(expected))]
    bad = [s for s in content.stamps if not stamp_matches(s, epoch)]
    problems += [f"{s.where}: {s.kind} date is not the build epoch" for s in bad[:5]]
    return problems


def verify_fat_disk(run: Run) -> FatDiskReport:
    """Read the disk back with the independent reader; every file against the stage and notices manifests.

    A disk that fails is removed, so the next run rebuilds it instead of trusting it.
    """
    spec, paths = run.spec, run.pending
    target = paths.fat_disk
    paths.fat_disk_report.unlink(missing_ok=True)
    # The drivers' and notices' records come from the stage and notices manifests, not from the writer.
    _files, records = fat_disk_files(run)
    expected = {r.path: (r.sha256, r.size) for r in records}
    with discard_on_failure([target]):
        beside = _FsckBeside(target)
        try:
            content = read_fat_disk(target)
        except Exception:
            beside.wait()  # the reader's error is the one to report
            raise
        # An interrupt (Ctrl-C, or SystemExit from the SIGTERM a doit worker gets when doit dies) is not waited
        # on: fsck.fat may never end, and the process is ending (the daemon thread and fsck.fat go with it).
        fsck, fsck_problems = beside.result()
        problems = _problems(spec, content, expected, run.epoch) + fsck_problems
        digest, size = run.memo.sha256(target), target.stat().st_size
        report = FatDiskReport(disk=target.name, sha256=digest, size=size, virtual_size=content.footer.current_size,
                               label=content.label, partition=(content.partition.first_lba,
                                                               content.partition.sectors),
                               files_checked=len(content.files), fsck=fsck, problems=tuple(problems))
        write_json_atomic(paths.fat_disk_report, report.to_json())
        if problems:
            raise VerifyError(f"{target.name}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
                              f"see {paths.fat_disk_report.name}")
    log.info(f"verified {target.name}: {report.files_checked} files OK (fsck.fat: {fsck})")
    return report

"""A sample payload for the FAT disk tests, and byte-level access to a written image (to damage it on purpose).

The locating helpers parse the MBR and boot sector with ``struct`` themselves, so
the hostile-image tests do not depend on the reader they attack.
"""

from __future__ import annotations

import errno
import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path

from aero_media.media.files import MediaFile

EPOCH = 1700000001  # 2023-11-14T22:13:21Z: an odd second, which FAT keeps in the creation time's hundredths
LABEL = "AERO"
BIG = 3 * 1024 * 1024 + 123  # not a whole number of clusters
MANY = 40  # long names of 3 LFN entries each: 160 entries, 5 KiB, ten 512-byte clusters


def sample_files() -> list[MediaFile]:
    """The driver-disk layout plus the awkward cases: long names, colliding aliases, empty and big files."""
    big = random.Random(7).randbytes(BIG)
    files = [
        MediaFile("INSTALL.TXT", data=b"Attach this disk, then run Setup.\r\n"),
        MediaFile("THIRD_PARTY_NOTICES.md", data=b"# Notices\n"),
        MediaFile("licenses/virtio-win/virtio-win_license.txt", data=b"license " * 300),
        MediaFile("certs/aero-test.cer", data=b"0\x82\x01\x0a" + bytes(range(256))),
        MediaFile("x86/viostor/viostor.inf", data=b"[Version]\r\nSignature=\"$Windows NT$\"\r\n"),
        MediaFile("x86/viostor/viostor.sys", data=b"MZ" + bytes(5000)),
        MediaFile("x86/viostor/viostor.cat", data=b"0\x82cat"),
        MediaFile("x64/viostor/viostor.inf", data=b"[Version]\r\n; amd64\r\n"),
        MediaFile("x64/viostor/viostor.sys", data=big),
        MediaFile("x64/viostor/WdfCoInstaller01009.dll", data=b"dll 9"),
        MediaFile("x64/viostor/WdfCoInstaller01011.dll", data=b"dll 11"),
        MediaFile("$WinPEDriver$/amd64/viostor/viostor.inf", data=b"[Version]\r\n; winpe\r\n"),
        MediaFile("$WinPEDriver$/amd64/viostor/viostor.sys", data=b"MZ winpe"),
        MediaFile("empty/empty.txt", data=b""),
        # Aliases that collide: an exact 8.3 name takes LONGNA~1 first, the long names get ~2 and ~3.
        MediaFile("names/LONGNA~1.TXT", data=b"exact"),
        MediaFile("names/longname1.txt", data=b"one"),
        MediaFile("names/longname2.txt", data=b"two"),
        MediaFile("names/Mixed.Txt", data=b"mixed case, fits 8.3"),
        MediaFile("names/résumé.txt", data=b"non-ASCII"),
        MediaFile("names/a.b.c.txt", data=b"dots"),
        MediaFile("names/.hidden", data=b"leading dot"),
        MediaFile("names/c++ notes.txt", data=b"plus and space"),
        MediaFile("names/exactly 26 characters.text", data=b"two full LFN entries, no terminator"),
        MediaFile("names/" + "n" * 200 + ".txt", data=b"a 204-character name"),
    ]
    files += [MediaFile(f"many/entry with a long name number {i:02d}.txt", data=b"%d" % i) for i in range(MANY)]
    return files


@dataclass(frozen=True)
class Geometry:
    """Where things are in a written image (byte offsets)."""

    partition: int
    bps: int
    spc: int
    reserved: int
    nfats: int
    fat_sectors: int
    root: int

    def fat(self, copy: int = 0) -> int:
        return self.partition + (self.reserved + copy * self.fat_sectors) * self.bps

    def cluster(self, n: int) -> int:
        return self.partition + (self.reserved + self.nfats * self.fat_sectors + (n - 2) * self.spc) * self.bps


def geometry(img: Path) -> Geometry:
    """Parse the first partition's BPB with ``struct`` (independently of both the writer and the reader)."""
    with open(img, "rb") as fp:
        mbr = fp.read(512)
        first = struct.unpack_from("<I", mbr, 446 + 8)[0] * 512
        fp.seek(first)
        bs = fp.read(512)
    bps, spc, reserved, nfats = struct.unpack_from("<HBHB", bs, 11)
    fat_sectors, root = struct.unpack_from("<I", bs, 36)[0], struct.unpack_from("<I", bs, 44)[0]
    return Geometry(first, bps, spc, reserved, nfats, fat_sectors, root)


def find_entry(img: Path, geo: Geometry, short: bytes) -> int:
    """Byte offset of the (first) 8.3 directory entry named ``short`` (11 bytes), searched in the directories.

    Our writer puts every directory before any file data, so the first MiB of the data area holds them.
    """
    assert len(short) == 11
    start = geo.cluster(geo.root)
    with open(img, "rb") as fp:
        fp.seek(start)
        data = fp.read(1024 * 1024)
    for pos in range(0, len(data), 32):
        if data[pos:pos + 11] == short and data[pos + 11] != 0x0F:
            return start + pos
    raise AssertionError(f"no entry {short!r}")


def first_cluster(img: Path, entry: int) -> int:
    """The first cluster named by the directory entry at ``entry``."""
    with open(img, "rb") as fp:
        fp.seek(entry)
        e = fp.read(32)
    high, low = int.from_bytes(e[20:22], "little"), int.from_bytes(e[26:28], "little")
    return high << 16 | low


def patch(img: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of ``img`` in place."""
    with open(img, "r+b") as fp:
        fp.seek(offset)
        fp.write(data)


def set_first_cluster(img: Path, entry: int, cluster: int) -> None:
    """Point the directory entry at ``entry`` to another first cluster."""
    patch(img, entry + 20, struct.pack("<H", cluster >> 16))
    patch(img, entry + 26, struct.pack("<H", cluster & 0xFFFF))


def set_fat(img: Path, geo: Geometry, cluster: int, value: int) -> None:
    """Set one FAT entry in every copy of the FAT."""
    for copy in range(geo.nfats):
        patch(img, geo.fat(copy) + 4 * cluster, struct.pack("<I", value))


def sparse_copy(src: Path, dst: Path, offset: int = 0, length: int | None = None) -> Path:
    """Copy ``length`` bytes of ``src`` from ``offset`` to ``dst``, skipping the holes of a sparse ``src``.

    The images are mostly holes; copying them densely made the tests slow.
    """
    end = src.stat().st_size if length is None else offset + length
    with open(src, "rb") as fp, open(dst, "wb") as out:
        fd = fp.fileno()
        pos = offset
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
                hole = os.lseek(fd, data, os.SEEK_HOLE)
            except OSError as exc:  # ENXIO: only a hole is left
                if exc.errno != errno.ENXIO:
                    raise
                break
            data, hole = min(data, end), min(hole, end)
            fp.seek(data)
            out.seek(data - offset)
            while data < hole:
                chunk = fp.read(min(hole - data, 1024 * 1024))
                assert chunk, f"{src} is shorter than expected"
                out.write(chunk)
                data += len(chunk)
            pos = hole
        out.truncate(end - offset)
    return dst


def extract_partition(img: Path, out: Path) -> Path:
    """Copy the first partition's bytes to ``out`` (fsck.fat has no offset option)."""
    with open(img, "rb") as fp:
        mbr = fp.read(512)
    first, count = struct.unpack_from("<II", mbr, 446 + 8)
    return sparse_copy(img, out, first * 512, count * 512)

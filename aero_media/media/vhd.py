"""Fixed VHD: a raw disk followed by one 512-byte big-endian footer (Microsoft's VHD specification, 2006).

Aero's reader (``crates/aero-storage/src/vhd.rs``) checks the cookie, the format
version, the checksum, the current size (non-zero, whole sectors), the disk type
(fixed: the data offset is all ones) and that the file holds the whole disk;
:func:`parse_footer` applies exactly those rules. Other readers size the disk
differently: qemu takes the CHS geometry for most creator applications. So every
disk we write is an exact CHS product (:func:`disk_size`), and then "size from
CHS" and "size from the footer" agree in every reader. The rules and their sources are in
docs/windows7.md#vhd-footer and docs/upstream.md#aero-vhd-reader.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import NoReturn

from ..errors import UsageError, VerifyError

SECTOR = 512
FOOTER_SIZE = 512
COOKIE = b"conectix"
FEATURES = 2  # "reserved" bit, which the spec says must always be set
FORMAT_VERSION = 0x00010000
FIXED_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING = 2, 3, 4
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, the zero of the footer's timestamp
# Creator application: our own tag, so nobody mistakes the file for Virtual PC's ('vpc ') or Hyper-V's ('win ').
# qemu sizes disks of every creator but a few (win, qem2, d2v, CTXS, tap) from CHS; that is harmless here
# because the size is always an exact CHS product (disk_size), which the qemu-img test pins.
CREATOR_APP = b"aero"
CREATOR_VERSION = 0x00010000  # version 1.0 of this writer's layout; constant so builds stay byte-identical
CREATOR_OS = b"Wi2k"  # what Windows' own tools write; readers ignore it
MAX_CHS_SECTORS = 65535 * 16 * 255  # the largest disk the geometry field can describe (about 127 GiB)
MIB = 1024 * 1024
# Aero's sizing rule (ci/make-fat-image.ps1): max(64 MiB, payload × 1.2 + 8 MiB), whole MiB.
AUTO_MIN_MIB = 64
AUTO_MARGIN_MIB = 8
# The smallest disk that can carry FAT32 as we lay it out: a 1 MiB gap before the partition, 32 reserved
# sectors, two FATs and 65,525 clusters of one sector (FAT32's minimum count). The writer pads the reserved
# area by a few sectors for alignment and checks the exact fit itself.
FAT32_MIN_CLUSTERS = 65525
_MIN_FAT_SECTORS = math.ceil((FAT32_MIN_CLUSTERS + 2) * 4 / SECTOR)
FAT32_MIN_DISK = MIB + (32 + 2 * _MIN_FAT_SECTORS + FAT32_MIN_CLUSTERS) * SECTOR
SIZE_FIELD = "outputs.fat_disk.size_mib"


class VhdError(VerifyError):
    """A file is not a fixed VHD that Aero's reader accepts."""


@dataclass(frozen=True)
class VhdFooter:
    """The fields of a VHD footer, as stored."""

    features: int
    version: int
    data_offset: int
    timestamp: int
    creator_app: bytes
    creator_version: int
    creator_os: bytes
    original_size: int
    current_size: int
    cylinders: int
    heads: int
    sectors_per_track: int
    disk_type: int
    checksum: int
    unique_id: bytes
    saved_state: int


def chs_geometry(total_sectors: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) for a disk of ``total_sectors``: the VHD spec's appendix algorithm.

    The product may be smaller than ``total_sectors``; :func:`disk_size` picks sizes where it is not.
    """
    total = min(total_sectors, MAX_CHS_SECTORS)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_x_heads = total // spt
    else:
        spt = 17
        cyl_x_heads = total // spt
        heads = max((cyl_x_heads + 1023) // 1024, 4)
        if cyl_x_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_x_heads = total // spt
        if cyl_x_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_x_heads = total // spt
    return cyl_x_heads // heads, heads, spt


def chs_exact(size: int) -> int:
    """The smallest size of at least ``size`` bytes whose CHS geometry describes it exactly."""
    sectors = max(1, -(-size // SECTOR))
    while True:
        if sectors > MAX_CHS_SECTORS:
            raise UsageError(f"{SIZE_FIELD}: a disk of {size // MIB} MiB is larger than a VHD's geometry can "
                             f"describe ({MAX_CHS_SECTORS * SECTOR // MIB} MiB)",
                             f"set {SIZE_FIELD} to at most {MAX_CHS_SECTORS * SECTOR // MIB}")
        c, h, s = chs_geometry(sectors)
        if c * h * s == sectors:
            return sectors * SECTOR
        # c·h·s <= sectors < (c+1)·h·s: the next candidate is one more cylinder of this geometry (the loop
        # re-checks, since the algorithm may choose another geometry there); sizes only grow, so it ends.
        sectors = (c + 1) * h * s


def _fat32_overhead(size: int) -> int:
    # A lower bound of what FAT32 takes besides file data: the 1 MiB gap, 32 reserved sectors, two FATs of
    # 4 bytes per 512-byte cluster. The writer checks the exact fit (cluster slack, directories) itself.
    return MIB + 32 * SECTOR + 2 * 4 * (size // SECTOR)


def disk_size(payload_bytes: int, size_mib: int | None) -> int:
    """Bytes of the raw disk (the VHD without its footer) for ``payload_bytes`` of files.

    ``None`` (auto) is Aero's rule: at least 64 MiB and at least payload × 1.2 + 8 MiB,
    in whole MiB. Either way the size is then rounded up to the next exact CHS
    product, so every reader agrees on it. An explicit ``size_mib`` too small for
    FAT32 (65,525 clusters) or for the payload is refused.
    """
    if size_mib is None:
        mib = max(AUTO_MIN_MIB, math.ceil((payload_bytes * 1.2 + AUTO_MARGIN_MIB * MIB) / MIB))
        return chs_exact(mib * MIB)
    if isinstance(size_mib, bool) or not isinstance(size_mib, int) or size_mib <= 0:
        raise UsageError(f"{SIZE_FIELD}: {size_mib!r} is not a positive whole number of MiB",
                         f"set {SIZE_FIELD} to a number of MiB, e.g. 64, or remove it for the automatic size")
    size = chs_exact(size_mib * MIB)
    if size < FAT32_MIN_DISK:
        raise UsageError(f"{SIZE_FIELD}: {size_mib} MiB is too small for FAT32, which needs 65,525 clusters "
                         f"(at least {math.ceil(FAT32_MIN_DISK / MIB)} MiB)",
                         f"set {SIZE_FIELD} to at least {math.ceil(FAT32_MIN_DISK / MIB)}, or remove it")
    if size < payload_bytes + _fat32_overhead(size):
        too_small(size_mib, payload_bytes, _min_mib(payload_bytes))
    return size


def _min_mib(payload_bytes: int) -> int:
    mib = max(math.ceil((payload_bytes + MIB) / MIB), math.ceil(FAT32_MIN_DISK / MIB))
    while chs_exact(mib * MIB) < payload_bytes + _fat32_overhead(chs_exact(mib * MIB)):
        mib += 1  # the overhead is under 2 % of the size, so this takes a few steps
    return mib


def too_small(size_mib: int, payload_bytes: int, need_mib: int) -> NoReturn:
    """Raise the one-line error for an explicit size that cannot hold the payload."""
    raise UsageError(f"{SIZE_FIELD}: {size_mib} MiB cannot hold the {payload_bytes / MIB:.1f} MiB payload on FAT32 "
                     f"(it needs at least {need_mib} MiB)",
                     f"set {SIZE_FIELD} to at least {need_mib}, or remove it for the automatic size")


def _checksum(footer: bytes) -> int:
    # Ones' complement of the byte sum, with the checksum field (bytes 64-67) counted as zero.
    return ~(sum(footer[:64]) + sum(footer[68:])) & 0xFFFFFFFF


def footer(size: int, epoch: int, unique_id: bytes) -> bytes:
    """The 512-byte footer of a fixed VHD whose raw disk is ``size`` bytes (a CHS-exact multiple of 512)."""
    if size <= 0 or size % SECTOR:
        raise ValueError(f"VHD size {size} is not a positive multiple of {SECTOR}")
    if len(unique_id) != 16:
        raise ValueError("a VHD unique id is 16 bytes")
    c, h, s = chs_geometry(size // SECTOR)
    head = struct.pack(">8sIIQI4sI4sQQHBBI", COOKIE, FEATURES, FORMAT_VERSION, FIXED_DATA_OFFSET,
                       max(0, epoch - VHD_EPOCH) & 0xFFFFFFFF, CREATOR_APP, CREATOR_VERSION, CREATOR_OS,
                       size, size, c, h, s, DISK_FIXED)
    data = bytearray(head + b"\0\0\0\0" + unique_id + b"\0")
    data += b"\0" * (FOOTER_SIZE - len(data))
    struct.pack_into(">I", data, 64, _checksum(bytes(data)))
    return bytes(data)


def parse_footer(data: bytes, file_size: int) -> VhdFooter:
    """Parse the last 512 bytes of a file of ``file_size`` bytes; apply Aero's reader rules to a fixed VHD.

    Raises :class:`VhdError` naming the first rule the footer breaks.
    """
    fix = "rebuild the FAT disk image"
    if len(data) != FOOTER_SIZE:
        raise VhdError(f"VHD footer: {len(data)} bytes, not {FOOTER_SIZE} (the file is too short for a VHD)", fix)
    (cookie, features, version, data_offset, timestamp, app, app_version, host, original, current, cylinders,
     heads, spt, disk_type, checksum) = struct.unpack_from(">8sIIQI4sI4sQQHBBII", data)
    if cookie != COOKIE:
        raise VhdError(f"VHD footer: cookie {cookie!r} is not {COOKIE!r} (not a VHD, or not a whole one)", fix)
    if version != FORMAT_VERSION:
        raise VhdError(f"VHD footer: unsupported format version {version:#010x} (Aero reads {FORMAT_VERSION:#010x})",
                       fix)
    if checksum != _checksum(data):
        raise VhdError(f"VHD footer: checksum {checksum:#010x} does not match its bytes ({_checksum(data):#010x})",
                       fix)
    if disk_type != DISK_FIXED:
        kind = {DISK_DYNAMIC: "dynamic", DISK_DIFFERENCING: "differencing"}.get(disk_type, "unknown")
        raise VhdError(f"VHD footer: disk type {disk_type} ({kind}) is not a fixed VHD (type {DISK_FIXED})", fix)
    if data_offset != FIXED_DATA_OFFSET:
        raise VhdError(f"VHD footer: a fixed disk's data offset must be all ones, not {data_offset:#x}", fix)
    if current == 0 or current % SECTOR:
        raise VhdError(f"VHD footer: current size {current} is not a non-zero multiple of {SECTOR}", fix)
    if file_size < current + FOOTER_SIZE:
        raise VhdError(f"VHD footer: the file has {file_size} bytes, fewer than the disk's {current} plus the "
                       f"{FOOTER_SIZE}-byte footer (truncated)", fix)
    return VhdFooter(features, version, data_offset, timestamp, app, app_version, host, original, current,
                     cylinders, heads, spt, disk_type, checksum, bytes(data[68:84]), data[84])

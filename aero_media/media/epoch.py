"""The one timestamp every medium carries: ``SOURCE_DATE_EPOCH``, checked."""

from __future__ import annotations

import os

from ..errors import UsageError

# 1980-01-01T00:00:00Z: the earliest time a zip entry (and a FAT directory entry) can carry, so all media agree.
DEFAULT_EPOCH = 315532800
# ISO 9660 directory records store the year as 1900 + one byte; stay well inside it.
MAX_EPOCH = 4102444799  # 2099-12-31T23:59:59Z


def source_date_epoch(default: int = DEFAULT_EPOCH) -> int:
    """Return ``SOURCE_DATE_EPOCH`` from the environment, else ``default`` (1980-01-01 UTC)."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return default
    # isdigit() alone accepts other scripts' digits ('١٢٣'), which int() would then convert.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise UsageError(f"SOURCE_DATE_EPOCH={shown!r} is not a whole number of seconds (ASCII digits)",
                         "set it to a Unix time, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)")
    return check_epoch(int(raw), "SOURCE_DATE_EPOCH")


def check_epoch(epoch: int, what: str) -> int:
    """Reject timestamps the media formats cannot hold."""
    if not 0 <= epoch <= MAX_EPOCH:
        raise UsageError(f"{what}={epoch} is outside 0..{MAX_EPOCH} (1970..2099)", "use a Unix time in that range")
    return epoch

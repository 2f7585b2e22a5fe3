"""The UDF tree of an image as pycdlib reads it: an independent reader of the UDF our writer and repack write."""

from __future__ import annotations

import io
from pathlib import Path


def udf_files(iso: Path) -> dict[str, bytes]:
    """path (no leading '/'): bytes of every file, as pycdlib's UDF reader sees them."""
    import pycdlib

    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        out = {}
        for root, _dirs, names in reader.walk(udf_path="/"):
            for name in names:
                path = f"{root.rstrip('/')}/{name}"
                buf = io.BytesIO()
                if reader.get_record(udf_path=path).get_data_length():  # pycdlib refuses to copy an empty file
                    reader.get_file_from_iso_fp(buf, udf_path=path)
                out[path.lstrip("/")] = buf.getvalue()
        return out
    finally:
        reader.close()

"""A medium that fails verification is removed, so the next run rebuilds it instead of trusting it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import VerifyError
from ..fsutil import remove_tree


@contextlib.contextmanager
def discard_on_failure(media: list[Path]) -> Iterator[None]:
    """Remove media that failed verification, so the next run rebuilds them instead of trusting them."""
    try:
        yield
    except VerifyError as exc:
        for m in media:
            remove_tree(m)
        raise VerifyError(exc.message, "the failed media were removed (the report stays); run doit again to "
                                       "rebuild them, and report a bug if it fails again") from None

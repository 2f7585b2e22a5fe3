"""The upstream virtio-win ISO stages: fetch (locate, download, prove) and extract (stream out)."""

from __future__ import annotations

from typing import Any

from .spec import Context, Spec


def fetch_stage(spec: Spec, ctx: Context) -> dict[str, Any]:
    """Placeholder until fetch lands."""
    raise NotImplementedError


def extract_stage(spec: Spec, ctx: Context) -> dict[str, Any]:
    """Placeholder until extract lands."""
    raise NotImplementedError

"""Writing a build's pins into its spec file (``aero-media pin``, ``doit pin:<spec>``).

The pins are the source ISO's sha256 (``source.sha256``, from ``build/<spec>/proof.json``) and
each staged file's (``source.expect``, from ``build/<spec>/stage/<arch>.json``). The spec is
edited in place with ruamel.yaml's round-trip loader and dumper, which keep comments, key order
and quoting (PyYAML drops comments). Its dumper still respaces some lines (aligned flow
mappings), so only the lines the edit changes are taken from it: every other line of the file
is kept byte for byte.
"""

from __future__ import annotations

import difflib
import io
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from .. import log
from ..errors import BuildStateError, SourceError, SpecError
from ..fsutil import write_bytes_atomic
from ..manifests import ProofRecord, StageManifest, read_manifest
from ..paths import Run
from ..spec.types import SourceKind

PINNABLE = frozenset({SourceKind.VIRTIO_WIN_DIR, SourceKind.VIRTIO_WIN_ISO})
"""The sources whose specs take ``source.expect`` (specs/schema.json allows it for these alone; tested equal)."""


class PinOutcome(Enum):
    """What a pin run did (each is exit 0: a refusal raises instead)."""

    EQUAL = "equal"
    """The spec already holds exactly these pins: the file is untouched."""
    SHOWN = "shown"
    """The diff was shown; nothing was written (``--yes`` writes)."""
    WRITTEN = "written"
    """The pins were written."""


@dataclass(frozen=True)
class Pins:
    """What a build pins: the source ISO's sha256 (None: the spec reads no ISO) and each staged file's."""

    sha256: str | None
    expect: dict[str, str]


@dataclass(frozen=True)
class Clash:
    """A pin the spec holds that the build contradicts."""

    what: str
    pinned: str
    built: str


def built_pins(run: Run) -> Pins:
    """The pins of the last build of ``run``'s spec, from its stage manifests (and proof record, for an ISO).

    Raises :class:`BuildStateError` when there is no build to pin from, or when the build
    signs the drivers itself (its staged bytes are not the source's, which the pins check).
    """
    spec, paths = run.spec, run.paths
    if spec.source.kind not in PINNABLE:
        raise BuildStateError(f"{spec.display}: a {spec.source.kind.value} source takes no pins (source.expect is "
                              f"for {' and '.join(sorted(k.value for k in PINNABLE))} sources)",
                              "nothing to pin for this spec")
    signer = spec.signing.signer
    if signer is not None and signer.signs:
        raise BuildStateError(f"{spec.display}: the build test-signs the drivers, so its staged files are not the "
                              "source's bytes that source.expect pins", "pin a source that is signed already, "
                              "or write the pins by hand from the source's files")
    expect: dict[str, str] = {}
    for arch in spec.arches:
        manifest = paths.stage_manifest(arch)
        if not manifest.is_file():
            raise BuildStateError(f"{spec.display}: no build to pin from ({_shown(manifest, run)} is missing)",
                                  f"run doit build:{spec.name}, check its media, then pin")
        expect.update((f.path, f.sha256) for f in StageManifest.read(manifest).files)
    sha256 = None
    if spec.source.is_iso:
        if not paths.proof_record.is_file():
            raise BuildStateError(f"{spec.display}: no build to pin from ({_shown(paths.proof_record, run)} "
                                  "is missing)", f"run doit build:{spec.name}, check its media, then pin")
        sha256 = read_manifest(paths.proof_record, ProofRecord.from_json).sha256
    return Pins(sha256, expect)


def _shown(path: Path, run: Run) -> str:
    try:
        return path.relative_to(run.ctx.root).as_posix()
    except ValueError:
        return str(path)


def clashes(run: Run, pins: Pins) -> list[Clash]:
    """The spec's pins that differ from ``pins`` (a pin of a file the build did not stage is no clash)."""
    src = run.spec.source
    out = []
    if src.sha256 is not None and pins.sha256 is not None and src.sha256.lower() != pins.sha256:
        out.append(Clash("source.sha256 (the ISO)", src.sha256, pins.sha256))
    for path, want in src.expect.items():
        got = pins.expect.get(path)
        if got is not None and want.lower() != got:
            out.append(Clash(f"source.expect {path}", want, got))
    return out


def _yaml() -> YAML:
    y = YAML()  # round trip: comments, key order and quoting survive
    y.preserve_quotes = True
    y.width = 1 << 16  # never fold a long line (a URL, a description)
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _dump(y: YAML, data: Any) -> list[str]:
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue().splitlines(keepends=True)


def _squash(line: str) -> str:
    return "".join(line.split())


def edited_text(text: str, display: str, pins: Pins) -> str:
    """``text`` (a spec file) with ``pins`` written into its ``source:``; all other lines kept byte for byte.

    Pins already there are updated in place; new ones are added after them (in arch, then path
    order), and a new ``expect:`` or ``sha256:`` goes at the end of ``source:``.
    """
    y = _yaml()
    try:
        data = y.load(text)
    except YAMLError as exc:
        raise SpecError(f"{display}: not YAML ({' '.join(str(exc).split())})", "fix the file first") from None
    source = data.get("source") if isinstance(data, CommentedMap) else None
    if not isinstance(source, CommentedMap):
        raise SpecError(f"{display}: no source: mapping to write pins into", "fix the spec first")
    original = text.splitlines(keepends=True)
    base = _dump(y, data)
    # The dumper keeps the lines of the file and only respaces some of them: then its lines stand for the
    # file's one for one, and its diff can be applied to the file's own lines.
    if len(base) != len(original) or any(_squash(a) != _squash(b) for a, b in zip(base, original, strict=True)):
        raise SpecError(f"{display}: cannot edit this file keeping every other line as written",
                        "write the pins the diff would show by hand (aero-media pin prints them)")
    if pins.sha256 is not None and source.get("sha256") != pins.sha256:
        # A new key goes last: a comment above a key belongs (in ruamel.yaml) to the key before it.
        source["sha256"] = pins.sha256
    if pins.expect:
        expect = source.get("expect")
        if not isinstance(expect, CommentedMap):
            expect = CommentedMap()
            source["expect"] = expect
        for path, digest in pins.expect.items():
            if expect.get(path) != digest:
                expect[path] = digest
    new = _dump(y, data)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, new, autojunk=False).get_opcodes():
        out.extend(original[i1:i2] if op == "equal" else new[j1:j2])
    return "".join(out)


def pin_spec(run: Run, pins: Pins, *, yes: bool, replace: bool) -> PinOutcome:
    """Show the diff that writes ``pins`` into ``run``'s spec file; write it (atomically, mode kept) with ``yes``.

    Pins that differ from the build are one error line each and refuse the run unless ``replace``.
    The diff goes to stdout; what happened, to stderr.
    """
    spec = run.spec
    found = clashes(run, pins)
    if found and not replace:
        for c in found:
            log.error(f"{spec.display}: {c.what} is pinned to {c.pinned}, the build has {c.built}")
        raise SourceError(f"{spec.display}: {len(found)} pin(s) differ from the build",
                          "check the build's source; then run again with --replace to write the build's pins")
    path = spec.file
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{spec.display}: cannot read: {exc}", "check the file") from None
    new = edited_text(text, spec.display, pins)
    if new == text:
        log.info(f"{spec.display}: the pins already match the build ({len(pins.expect)} file(s)"
                 f"{' and the ISO' if pins.sha256 else ''}); nothing to write")
        return PinOutcome.EQUAL
    diff = difflib.unified_diff(text.splitlines(keepends=True), new.splitlines(keepends=True),
                                f"a/{spec.display}", f"b/{spec.display}")
    print("".join(diff), end="", flush=True)
    if not yes:
        log.info(f"{spec.display}: not written; run again with --yes to write these pins")
        return PinOutcome.SHOWN
    try:
        write_bytes_atomic(path, new.encode("utf-8"), os.stat(path).st_mode & 0o7777)
    except OSError as exc:
        raise SpecError(f"{spec.display}: cannot write: {exc.strerror}", "check the file's folder") from None
    log.info(f"wrote the pins into {spec.display}; the next build checks them")
    return PinOutcome.WRITTEN


"""Fetch stage: obtain the virtio-win ISO, verified, from a local path, the cache or the network.

Upstream publishes no checksums and re-spins ISOs in place under the same URL, so
nothing is trusted until it is hashed: a local file is checked against the pin, a
cached file is re-hashed when the hash memo does not know its stat (unless the record
beside it vouches for a restored copy: :func:`vouched`), and a download is verified before it gets
its final name (:mod:`.isocache` has the cache layout, :mod:`.download` the transfer).
A local or cached file is proven in the background while extraction runs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from .. import log
from ..errors import BuildStateError, ChecksumMismatch, FetchError, SourceError
from ..fsutil import quick_handover, read_json, relpath_for_humans, write_json_atomic
from ..hashmemo import HashMemo, proven_hash, stat_key
from ..log import info, warn
from ..manifests import FetchRecord, ProofRecord, read_manifest
from ..paths import Run
from ..spec.model import Context, Source, Spec
from .isocache import (
    FetchResult,
    cache_file_for,
    check_size,
    hash_file,
    pin_sha256,
    record_proof,
    recorded_digest,
    show_path,
    sidecar,
)

# --------------------------------------------------------------------------- cache and sources


LOCKS_DIR = ".locks"


@contextlib.contextmanager
def _entry_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on a cache entry so parallel builds (of any checkout) do not share a .part.

    ``filelock`` locks on Windows too. Its files live in ``<cache>/.locks/``, not in the
    entry, so an entry holds only what was downloaded.
    """
    from filelock import FileLock, Timeout

    locks = directory.parent.parent / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks / f"{directory.parent.name}-{directory.name}.lock", thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        info(f"waiting for another process fetching into {show_path(directory)}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _cache_hit(dest: Path, url: str, sha256: str | None, size: int | None, progress: bool,
               memo: HashMemo | None, defer: bool) -> FetchResult | None:
    """Re-verify a cached file; delete it and return None when it is damaged.

    With ``defer`` a file the memo does not know is not hashed here: the result
    says what its digest must be, and the prove stage checks it.
    """
    if not dest.is_file():
        return None
    side = sidecar(dest)
    recorded: dict[str, object] | None = None
    if sha256 is None:
        try:
            data = read_json(side)
            recorded = data if isinstance(data, dict) else {}
        except FileNotFoundError:
            recorded = None  # placed by hand, as the offline hint suggests: adopt it below
        except (OSError, ValueError):
            recorded = {}
        if recorded is not None and (recorded.get("url") != url or not isinstance(recorded.get("sha256"), str)):
            warn(f"{show_path(side)} does not describe {url}; downloading again")
            _discard(dest)
            return None
    if size is not None and dest.stat().st_size != size:
        warn(f"cached {show_path(dest)} has {dest.stat().st_size} bytes, source.size pins {size}; downloading again")
        _discard(dest)
        return None
    want = sha256 if sha256 is not None else (recorded or {}).get("sha256")
    known = memo.lookup(dest, dest.stat()) if memo is not None else None
    if known is None and memo is not None and isinstance(want, str):
        known = _adopt_record(dest, url, want, memo)
    if defer and known is None and isinstance(want, str):
        return FetchResult(path=dest, sha256=None, size=dest.stat().st_size, origin="cache", url=url,
                           stat=dest.stat(), expected=want)
    actual, n, st = hash_file(dest, f"verify {dest.name}", progress, memo)
    if want is not None and actual != want:
        warn(f"cached {show_path(dest)} is damaged (sha256 {actual}, expected {want}); downloading again")
        _discard(dest)
        return None
    if sha256 is None and recorded is None:
        info(f"using {show_path(dest)} (placed in the cache by hand; not pinned by sha256, payload pins apply)")
    if st is not None:
        record_proof(dest, url, actual, st, pinned=sha256 is not None)
    return FetchResult(path=dest, sha256=actual, size=n, origin="cache", url=url, stat=st,
                       expected=want if isinstance(want, str) else None)


def _adopt_record(dest: Path, url: str, want: str, memo: HashMemo) -> str | None:
    """``want`` when the record beside cache entry ``dest`` vouches that the file, as it is now, has that digest
    (a restored copy of the cache: new inode and ctime); the memo then knows it, so nothing reads it again."""
    st = dest.stat()
    if recorded_digest(dest, url, st) != want:
        return None
    memo.record(dest, st, want)
    return want


def _discard(dest: Path) -> None:
    for p in (dest, sidecar(dest)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _use_local(source: Source, path: Path, progress: bool, where: str, memo: HashMemo | None,
               defer: bool) -> FetchResult:
    shown = source.path_raw or show_path(path)

    def fix(pin: str) -> str:
        return (f"point source.path in {where} at the pinned ISO; if this file is the one you want "
                f"(upstream re-spins ISOs in place), check it, then update {pin} in {where}")

    check_size(f"source.path {shown}", path.stat().st_size, source.size, fix("source.size"))
    want = pin_sha256(source.sha256)
    st = path.stat()
    if defer and (memo is None or memo.lookup(path, st) is None):
        return FetchResult(path=path, sha256=None, size=st.st_size, origin="path", url=source.url, stat=st,
                           expected=want)
    actual, n, st2 = hash_file(path, f"hash {path.name}", progress, memo)
    if want is not None and actual != want:
        raise ChecksumMismatch(f"source.path {shown}: sha256 is {actual}, but source.sha256 pins {want}",
                               fix("source.sha256"))
    return FetchResult(path=path, sha256=actual, size=n, origin="path", url=source.url, stat=st2, expected=want)


def obtain_iso(source: Source, cache_dir: Path, *, spec_display: str | None = None, retries: int = 4,
               timeout: float = 30.0, backoff: float = 0.5, progress: bool = True,
               memo: HashMemo | None = None, defer_hash: bool = False) -> FetchResult:
    """Return the source ISO, verified: from ``source.path``, the cache, or a download.

    1. ``source.path`` names an existing file: hash it (streamed) and check it
       against ``source.sha256``/``source.size`` when given; no network.
    2. The cache holds the file: re-hash it against the pin (or its sidecar); no network.
    3. ``source.url`` is set: :func:`download` into the cache.
    4. Otherwise raise :class:`FetchError` naming the missing path and the fix.

    ``spec_display`` names the spec in hints (e.g. ``specs/win7.yaml``); ``memo``
    spares re-hashing a file whose stat it knows; ``defer_hash`` returns a local or
    cached file unhashed (``sha256`` None, ``expected`` what it must be) for the
    caller to prove; the other keywords are passed to :func:`download`.
    """
    where = spec_display or "the spec"
    if source.path is not None:
        path = Path(source.path)
        shown = source.path_raw or show_path(path)
        if path.is_file():
            return _use_local(source, path, progress, where, memo, defer_hash)
        if path.exists():
            raise FetchError(f"source.path {shown} ({show_path(path)}) is not a file",
                             f"point source.path in {where} at the virtio-win ISO file")
        if not source.url:
            raise FetchError(f"source.path {shown}: no such file ({show_path(path)})",
                             f"put the ISO there or correct source.path in {where}, or add source.url "
                             "and source.sha256 to download it")
        warn(f"source.path {shown} does not exist; using source.url")
    if not source.url:
        raise FetchError("the source names neither a path nor a url",
                         f"set source.path or source.url (with source.sha256) in {where}")
    if source.sha256 is None and not source.expect:
        raise FetchError(f"source.url {source.url} is not pinned",
                         f"add source.sha256 (whole ISO) and/or source.expect (per-file sha256) in {where}")
    sha = pin_sha256(source.sha256)
    dest = cache_file_for(cache_dir, source.url, sha)
    from . import download  # http, ssl and urllib cost a run that reads a local ISO 15 ms

    job = download.prepare(source.url, dest, sha, source.size, timeout, progress, where)
    with _entry_lock(dest.parent):
        hit = _cache_hit(dest, source.url, sha, source.size, progress, memo, defer_hash)
        if hit is not None:
            return hit
        info(f"downloading {source.url} to {show_path(dest)}")
        return download.run(job, retries, backoff)

# --------------------------------------------------------------------------- the fetch stage


def iso_input(spec: Spec, ctx: Context) -> Path:
    """The ISO file extraction reads: the local ``path`` when present, else the cache entry."""
    src = spec.source
    if src.path is not None and (src.path.exists() or src.url is None):
        return src.path
    assert src.url is not None
    return cache_file_for(ctx.cache_dir(spec), src.url, src.sha256)


def fetch_stage(run: Run) -> FetchRecord:
    """Locate or download the spec's ISO, record it, and start proving its bytes.

    A download is hashed as it arrives. A local or cached file the hash memo does
    not know is hashed in the background (:func:`start_proof`) while extraction and
    staging run; the prove stage waits for it before anything is published.
    """
    spec, ctx, memo = run.spec, run.ctx, run.memo
    res = obtain_iso(spec.source, ctx.cache_dir(spec), spec_display=spec.display, memo=memo, defer_hash=True)
    if res.sha256 is not None and res.stat is not None:
        memo.record(res.path, res.stat, res.sha256)
    elif res.sha256 is None:
        start_proof(res.path, memo)
    # Identity only while the digest is pending: a re-download of the same bytes then
    # writes the same record, and nothing downstream reruns.
    identity = file_identity(res.stat or res.path.stat()) if res.sha256 is None else ()
    record = FetchRecord(path=relpath_for_humans(res.path, ctx.root), size=res.size, stat=identity,
                         origin=res.origin, url=res.url, sha256=res.sha256, expected=res.expected)
    write_json_atomic(run.paths.fetch_record, record.to_json())
    state = f"sha256 {res.sha256}" if res.sha256 else "proving its sha256 in the background"
    log.info(f"{spec.name}: ISO ready ({res.origin}), {state}")
    return record


def cache_entry(spec: Spec, ctx: Context) -> Path | None:
    """The download cache entry the spec's ISO is read from, or None when it is read from ``source.path``."""
    src = spec.source
    if src.url is None or (src.path is not None and src.path.exists()):
        return None
    return cache_file_for(ctx.cache_dir(spec), src.url, src.sha256)


def vouched(run: Run, iso: Path) -> str | None:
    """The sha256 the download cache's record vouches for, when ``iso`` is the spec's cache entry and the record
    describes it as it is now; the memo is told, so the digest is taken from there.

    This is what makes a restored cache (a copy: new inode and ctime) cost no read. Only a cache
    entry is vouched for, never a user's ISO elsewhere, whose in-place edits the ctime in the
    memo's key catches.
    """
    entry = cache_entry(run.spec, run.ctx)
    if entry is None or iso != entry or run.spec.source.url is None:
        return None
    try:
        st = iso.stat()
    except OSError:
        return None
    digest = recorded_digest(iso, run.spec.source.url, st)
    if digest is not None and run.memo.lookup(iso, st) is None:
        run.memo.record(iso, st, digest)
    return digest


def file_identity(st: os.stat_result) -> tuple[int, ...]:
    """Size, mtime, inode and ctime: a file whose identity is unchanged has not been rewritten."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def still_current(run: Run) -> bool:
    """Whether the fetch record still describes the ISO on disk, judged without reading it."""
    paths = run.paths
    iso = iso_input(run.spec, run.ctx)
    try:
        fetched = read_manifest(paths.fetch_record, FetchRecord.from_json)
        st = iso.stat()
    except (OSError, BuildStateError):
        return False
    if fetched.sha256 is None:
        return file_identity(st) == fetched.stat or (fetched.expected is not None
                                                     and vouched(run, iso) == fetched.expected)
    known = run.memo.lookup(iso, st)
    return (known if known is not None else vouched(run, iso)) == fetched.sha256


def check_unchanged(iso: Path, fetched: FetchRecord, memo: HashMemo, vouched_for: str | None = None) -> None:
    """Refuse an ISO that is not the file fetch located or proved (rewritten, or replaced, since).

    ``vouched_for`` is what the download cache's record vouches for (:func:`vouched`): a restored
    copy of the entry fetch located, with the digest that entry must have, is that file.
    """
    if fetched.sha256 is None:
        if file_identity(iso.stat()) != fetched.stat and (vouched_for is None or vouched_for != fetched.expected):
            raise SourceError(f"{fetched.path}: changed after it was fetched (size, times or inode differ)",
                              "run doit again: the ISO is located and proven anew")
        return
    digest, _size = proof_of(iso, memo)
    if digest != fetched.sha256:
        raise ChecksumMismatch(f"{fetched.path}: sha256 {digest} differs from {fetched.sha256}, which fetch "
                               "proved; the file changed after it was checked",
                               f"delete {fetched.path} and run doit again (it is downloaded or checked anew)")


class _BackgroundHash:
    """The sha256 of one file, computed in a thread; hashlib releases the GIL, so other work goes on."""

    def __init__(self, path: Path, memo: HashMemo) -> None:
        self.path = path
        self._memo = memo
        self._result: tuple[str, int, os.stat_result | None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sha256 {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            # Its own progress line: the hash of a 700 MB ISO outlives the steps it runs beside.
            meter = log.Progress(f"hash {self.path.name} (background)", self.path.stat().st_size)
            try:
                with quick_handover():
                    self._result = proven_hash(self.path, meter.advance)
            finally:
                meter.close()
            digest, _size, st = self._result
            if st is not None:
                self._memo.record(self.path, st, digest)
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        """Until the hash is done (or failed)."""
        self._thread.join()

    def result(self) -> tuple[str, int, os.stat_result | None]:
        self.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


_PENDING: dict[str, _BackgroundHash] = {}
_PENDING_LOCK = threading.Lock()


def start_proof(path: Path, memo: HashMemo) -> None:
    """Start hashing ``path`` in the background (once per version of the file, per process)."""
    key = stat_key(path, path.stat())
    with _PENDING_LOCK:
        if key not in _PENDING:
            _PENDING[key] = _BackgroundHash(path, memo)


def settle_background_hashes() -> None:
    """Wait for every hash still running in the background (their results stay in the memo).

    A run that ends without asking for a proof (a stage failed first) must not leave a
    thread writing the memo into a folder its caller is about to delete: a command's
    scratch project is removed as soon as the run returns.
    """
    with _PENDING_LOCK:
        pending = list(_PENDING.values())
        _PENDING.clear()
    for job in pending:
        job.wait()


def proof_of(path: Path, memo: HashMemo, progress: bool = True) -> tuple[str, int]:
    """The sha256 and size of ``path``: from the memo, a background hash in this process, or hashed now."""
    st = path.stat()
    known = memo.lookup(path, st)
    if known is not None:
        return known, st.st_size
    with _PENDING_LOCK:
        pending = _PENDING.pop(stat_key(path, st), None)
    if pending is not None:
        digest, size, _st = pending.result()
        return digest, size
    digest, size, valid = hash_file(path, f"hash {path.name}", progress)
    if valid is not None:
        memo.record(path, valid, digest)
    return digest, size


def prove_stage(run: Run) -> ProofRecord:
    """Wait for (or compute) the ISO's sha256, check it against its pin, and record the proof."""
    spec, paths, memo = run.spec, run.paths, run.memo
    paths.proof_record.unlink(missing_ok=True)
    fetched = read_manifest(paths.fetch_record, FetchRecord.from_json)
    iso = iso_input(spec, run.ctx)
    check_unchanged(iso, fetched, memo, vouched(run, iso))
    digest, size = proof_of(iso, memo)
    if fetched.expected is not None and digest != fetched.expected:
        if fetched.origin == "cache":
            # Bit rot, or a file swapped into the cache: never trust it again.
            _discard(iso)
            raise ChecksumMismatch(f"cached {fetched.path} is damaged (sha256 {digest}, expected "
                                   f"{fetched.expected}); it was deleted", "run doit again: it is downloaded anew")
        raise ChecksumMismatch(f"source.path {spec.source.path_raw or fetched.path}: sha256 is {digest}, but "
                               f"source.sha256 pins {fetched.expected}",
                               f"point source.path in {spec.display} at the pinned ISO; if this file is the one you "
                               f"want (upstream re-spins ISOs in place), check it, then update source.sha256")
    entry = cache_entry(spec, run.ctx)
    if entry == iso and spec.source.url is not None:
        st = iso.stat()
        if memo.lookup(iso, st) == digest:  # the digest is that of the file as it is now
            record_proof(iso, spec.source.url, digest, st, pinned=spec.source.sha256 is not None)
    proof = ProofRecord(sha256=digest, size=size)
    write_json_atomic(paths.proof_record, proof.to_json())
    log.info(f"{spec.name}: ISO proven, sha256 {digest}")
    return proof

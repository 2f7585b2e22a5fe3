"""Publishing: the verified media of one spec go from ``build/<spec>/media/`` into ``dist/<spec>/`` together.

The media stages write and verify every medium while an ISO source is still being hashed; this
stage runs only once all of them are verified and the ISO is proven (the task graph makes it
wait for both), so a wrong ISO, or a medium that fails its check, publishes nothing. Each
file is hard-linked, not copied: publishing costs a few renames whatever the media weigh, a
sparse disk stays sparse, and the digests the writers recorded stay true of the bytes in dist/.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .. import log
from ..fsutil import relpath_for_humans, staging_dir, sweep_leftovers
from ..paths import Run


def _link_or_copy(src: Path, dst: Path) -> None:
    """A new file ``dst`` with ``src``'s bytes: a hard link, or a copy where the file system has none.

    Raises FileExistsError when ``dst`` exists: it is never overwritten.
    """
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        # Another file system (dist/ a link elsewhere), or one without hard links.
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        created = False  # a FileExistsError from open() leaves alone what is not ours
        try:
            with open(dst, "xb") as fout:
                created = True
                with open(src, "rb") as fin:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                    os.chmod(fout.fileno(), os.stat(fin.fileno()).st_mode & 0o777)  # the writer's mode, not umask's
        except BaseException:  # the close too: a full disk may refuse the last block only then
            if created:
                dst.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _named(final: Path) -> Iterator[None]:
    """An OSError inside names ``final``: link(2) and rename(2) name their source, a temp or the build's copy,
    while the fault is where the medium goes (a read-only or full dist/)."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(final)) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _linked_temp(src: Path, final: Path) -> Path | None:
    """A temp name beside ``final`` holding ``src``'s bytes (None: ``final`` is ``src`` already)."""
    if _same_file(src, final):
        return None  # published already (rename(2) over a link to the same inode would do nothing and keep the temp)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(final)
    with _named(final):
        while True:
            # The temp names every writer uses, so a killed run's leftover is swept like theirs.
            tmp = final.parent / f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
            try:
                _link_or_copy(src, tmp)
                return tmp
            except FileExistsError:
                continue


def link_into_place(src: Path, final: Path) -> None:
    """Make ``final`` hold ``src``'s bytes in one rename: a reader sees the old file or the new one, never a part."""
    _rename_all([(tmp, final)] if (tmp := _linked_temp(src, final)) is not None else [])


def _rename_all(prepared: list[tuple[Path, Path]]) -> None:
    """Rename each temp over its final name; on a failure, the temps not yet renamed are removed."""
    try:
        while prepared:
            tmp, final = prepared[0]
            with _named(final):  # not the temp, which is removed below
                os.replace(tmp, final)
            prepared.pop(0)
    finally:
        for tmp, _final in prepared:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _publish_all(singles: list[tuple[Path, Path]], files: tuple[Path, ...], folder: Path,
                 pending_folder: Path) -> None:
    """Link every file into a temp name first, then rename them all in a row and swap ``folder`` in last.

    Linking (or, across file systems, copying) is the slow part; a kill during it leaves dist/
    as it was, with temps the next run sweeps. Only the renames and the folder's swap are left
    for the end, so a kill that lands between two of them has a window of microseconds.
    """
    prepared: list[tuple[Path, Path]] = []
    try:
        for src, final in singles:
            if (tmp := _linked_temp(src, final)) is not None:
                prepared.append((tmp, final))
        if folder.is_dir() and all(_same_file(f, folder / f.relative_to(pending_folder)) for f in files):
            _rename_all(prepared)
            return
        with staging_dir(folder) as tmp_folder:  # swapped in when the block ends
            for f in files:
                with _named(folder / f.relative_to(pending_folder)):
                    _link_or_copy(f, tmp_folder / f.relative_to(pending_folder))
            _rename_all(prepared)
    finally:
        for tmp, _final in prepared:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _drop(files: tuple[Path, ...]) -> list[str]:
    """Remove those of ``files`` that are regular files (never a folder or a link a user put there); their names."""
    gone = [p for p in files if p.is_file() and not p.is_symlink()]
    for old in gone:
        old.unlink()
    return [p.name for p in gone]


def publish_media(run: Run) -> list[Path]:
    """Publish the spec's verified media into ``dist/<spec>/``; return the published files.

    Every file is linked beside its final name first, then all are renamed in a row and the Guest
    Tools folder is swapped in whole (:func:`_publish_all`). The memo learns every published file's
    digest (a link changes the shared inode's ctime), so doit's checker and the next no-op run hash
    none of them.
    """
    pending, published = run.pending, run.paths
    singles = list(zip(pending.media_files, published.media_files, strict=True))
    folder = list(zip(pending.guest_tools_files, published.guest_tools_files, strict=True))
    pairs = singles + folder
    # The writers' digests, taken before a link changes the ctime they were recorded under (reports are hashed).
    digests = [run.memo.sha256(src) for src, _dst in pairs]
    _publish_all(singles, pending.guest_tools_files, published.guest_tools_dir, pending.guest_tools_dir)
    run.memo.record_many([(f, f.stat(), digest) for (src, dst), digest in zip(pairs, digests, strict=True)
                          for f in (src, dst)])
    # Beside the new set they would look current: the Guest Tools an older version left loose in dist/<spec>/, and
    # media the spec no longer makes (its FAT disk switched off, one-arch ISOs no longer wanted), by exact name.
    dist = relpath_for_humans(published.dist, run.ctx.root)
    if legacy := _drop(published.legacy_guest_tools):
        log.info(f"removed the Guest Tools an older version left in {dist}/ ({', '.join(legacy)}); they now live "
                 f"in {relpath_for_humans(published.guest_tools_dir, run.ctx.root)}/")
    if retired := _drop(published.retired_media):
        log.info(f"removed from {dist}/ what the spec no longer makes: {', '.join(retired)}")
    log.info(f"published {len(pairs)} files into {dist}/")
    return [dst for _src, dst in pairs]

"""IsoTree: reading virtio-win ISOs of every upstream style, and refusing hostile ones.

ISOs are built from KiB-sized stand-ins by tests/lib/upstream.py with whichever
of xorriso, genisoimage and pycdlib is installed; tests needing a missing tool
are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pefile
import pytest

from aero_media.errors import PipelineError, SourceError, UnsafePathError
from aero_media.sources.isoread import CHUNK, IsoRef, IsoTree
from aero_media.sources.tree import DirTree, Entry, EntryKind, Tree
from aero_media.winnames import case_clashes, check_no_case_clash
from tests.lib.upstream import (
    DEFAULT_LABEL,
    HOSTILE_KINDS,
    builtin_listing,
    have_tool,
    iso9660_name,
    iso_tools,
    make_hostile_iso,
    make_iso,
    make_upstream_tree,
    make_writable,
    require_tool,
    synthetic_inf,
    upstream_file_bytes,
)

# (style, tool, reader IsoTree must pick, namespaces present)
STYLE_CASES = [
    ("rr", "xorriso", "rr", ("rr", "iso9660")),
    ("rr", "genisoimage", "rr", ("rr", "iso9660")),
    ("rr", "pycdlib", "rr", ("rr", "iso9660")),
    ("rr-joliet", "xorriso", "rr", ("rr", "joliet", "iso9660")),
    ("rr-joliet", "genisoimage", "rr", ("rr", "joliet", "iso9660")),
    ("rr-joliet", "pycdlib", "rr", ("rr", "joliet", "iso9660")),
    ("joliet", "pycdlib", "joliet", ("joliet", "iso9660")),
    ("iso9660", "pycdlib", "iso9660", ("iso9660",)),
]
CASE_IDS = [f"{style}-{tool}" for style, tool, _, _ in STYLE_CASES]
RR_TOOLS = ["xorriso", "genisoimage", "pycdlib"]
NAME_ATTACKS = ["traversal", "absolute", "backslash", "dotdot", "nul", "duplicate", "joliet-traversal"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """The built-in upstream tree, read-only like mkisofs -r output, and its contents."""
    root = tmp_path_factory.mktemp("upstream") / "src"
    files = make_upstream_tree(root, readonly=True)
    return root, files


@pytest.fixture(scope="module")
def iso_of(upstream: tuple[Path, dict[str, bytes]], tmp_path_factory: pytest.TempPathFactory):
    """Build (and cache) the upstream tree as an ISO of one style with one tool."""
    out_dir = tmp_path_factory.mktemp("isos")
    cache: dict[tuple[str, str], Path] = {}

    def build(style: str, tool: str) -> Path:
        require_tool(tool)
        if (style, tool) not in cache:
            cache[(style, tool)] = make_iso(upstream[0], out_dir / f"{style}-{tool}.iso", style=style, tool=tool)
        return cache[(style, tool)]

    return build


def read_all(tree: IsoTree) -> dict[str, bytes]:
    out = {}
    for entry in tree.entries():
        if entry.kind == EntryKind.FILE:
            with tree.open(entry) as fp:
                out[entry.path] = fp.read()
    return out


@contextlib.contextmanager
def raises_line(exc_type: type[PipelineError], pattern: str) -> Iterator[pytest.ExceptionInfo]:
    """Like pytest.raises, matching ``pattern`` against the one-line rendering (message + fix)."""
    with pytest.raises(exc_type) as info:
        yield info
    line = info.value.render()
    assert "\n" not in line
    assert re.search(pattern, line), line


def snapshot(*dirs: Path) -> set[str]:
    return {str(p) for d in dirs for p in d.rglob("*")}


# -- the upstream styles read back exactly ------------------------------------

@pytest.mark.parametrize("style,tool,reader,spaces", STYLE_CASES, ids=CASE_IDS)
def test_every_style_reads_back_byte_exact(iso_of, upstream, style, tool, reader, spaces):
    _, files = upstream
    iso = iso_of(style, tool)
    expected = files if style != "iso9660" else {iso9660_name(p): data for p, data in files.items()}
    with IsoTree.open_path(iso) as tree:
        assert tree.reader == reader
        assert tree.namespaces == spaces
        assert tree.display == iso.name
        entries = tree.entries()
        sizes = {e.path: e.size for e in entries if e.kind == EntryKind.FILE}
        assert sizes == {p: len(data) for p, data in expected.items()}
        assert read_all(tree) == expected
    dirs = {e.path for e in entries if e.kind == EntryKind.DIR}
    folders = {p.rsplit("/", 1)[0] for p in expected if "/" in p}
    assert dirs == {"/".join(f.split("/")[:i]) for f in folders for i in range(1, f.count("/") + 2)}
    assert [e.parts for e in entries] == sorted(e.parts for e in entries), "parents first, stable order"
    assert not any(";" in e.path or e.path.endswith(".") for e in entries)


@pytest.mark.parametrize("style,tool", [("rr", "xorriso"), ("rr", "genisoimage"), ("rr-joliet", "pycdlib"),
                                        ("joliet", "pycdlib")])
def test_names_keep_their_original_case(iso_of, style, tool):
    with IsoTree.open_path(iso_of(style, tool)) as tree:
        paths = {e.path for e in tree.entries()}
    for path in ("NetKVM/w7/x86/netkvm.sys", "NetKVM/w10/amd64/Readme.md", "NetKVM/w7/amd64/readme.doc",
                 "viostor/2k8R2/amd64/viostor.inf", "vioinput/w7/amd64/WdfCoInstaller01009.dll",
                 "Balloon/w7/amd64/balloon.sys", "virtio-win_license.txt", "winfsp-2.0.23075.msi", "NetKVM/w8",
                 "tools/debug/LICENSE", "i386/w10/viostor.sys", "data/info.json"):
        assert path in paths


def test_iso9660_only_image_gives_mangled_upper_case_names(iso_of):
    with IsoTree.open_path(iso_of("iso9660", "pycdlib")) as tree:
        paths = {e.path for e in tree.entries()}
    assert "VIOINPUT/W7/AMD64/WDFCOINSTALLER01009.DLL" in paths
    assert "TOOLS/DEBUG/LICENSE" in paths  # 'LICENSE.;1' on disc: no version, no dot
    assert "VIRTIO_WIN_LICENSE.TXT" in paths


@pytest.mark.parametrize("tool", ["xorriso", "genisoimage", "pycdlib"])
def test_older_rr_joliet_image_reads_the_same_through_joliet(iso_of, upstream, tool):
    _, files = upstream
    with IsoTree.open_path(iso_of("rr-joliet", tool), reader="joliet") as tree:
        assert tree.reader == "joliet"
        assert read_all(tree) == files


@pytest.mark.parametrize("tool", ["xorriso", "genisoimage", "pycdlib"])
def test_primary_names_of_an_rr_image_read_the_same_bytes(iso_of, upstream, tool):
    # The last-resort reader on a modern image: names differ by tool (xorriso
    # upper-cases, genisoimage keeps case) but must be clean and the bytes equal.
    _, files = upstream
    with IsoTree.open_path(iso_of("rr", tool), reader="iso9660") as tree:
        got = read_all(tree)
    assert not any(";" in p for p in got)
    assert sorted(got.values()) == sorted(files.values())
    assert {p.casefold() for p in got} == {iso_path.casefold() for iso_path in got}  # no duplicates by case


def test_rock_ridge_deep_folder_relocation_is_undone(tmp_path):
    # Plain -r (not level 4) moves folders deeper than 8 levels to rr_moved and
    # leaves CL/RE links; Rock Ridge paths must come out where they belong.
    require_tool("genisoimage")
    deep = "NetKVM/w7/amd64/a/b/c/d/e/f/g"
    make_upstream_tree(tmp_path / "src", listing=[f"{deep}/netkvm.inf", "NetKVM/w7/amd64/netkvm.inf"])
    iso = tmp_path / "deep.iso"
    subprocess.run(["genisoimage", "-quiet", "-r", "-o", str(iso), str(tmp_path / "src")], check=True)
    with IsoTree.open_path(iso) as tree:
        files = read_all(tree)
        assert not any(e.path.lower().startswith("rr_moved") for e in tree.entries())
    assert set(files) == {f"{deep}/netkvm.inf", "NetKVM/w7/amd64/netkvm.inf"}
    assert files[f"{deep}/netkvm.inf"] == upstream_file_bytes(f"{deep}/netkvm.inf")
    with IsoTree.open_path(iso, reader="iso9660") as tree:
        assert any(e.path == "RR_MOVED" for e in tree.entries())  # the relocation really happened


def test_forcing_an_absent_reader_is_a_source_error(iso_of):
    with pytest.raises(SourceError, match=r"rr-xorriso\.iso: has no joliet names \(it has: rr, iso9660\)"):
        IsoTree.open_path(iso_of("rr", "xorriso"), reader="joliet")
    with pytest.raises(SourceError, match="has no udf names"):
        IsoTree.open_path(iso_of("rr", "xorriso"), reader="udf")
    with pytest.raises(ValueError):
        IsoTree.open_path(iso_of("rr", "xorriso"), reader="hfs")


def test_isotree_is_the_iso_twin_of_dirtree(iso_of, upstream):
    root, _ = upstream
    on_disk = {(e.path, e.kind, e.size) for e in DirTree(root).entries()}
    tree: Tree
    with IsoTree.open_path(iso_of("rr", iso_tools("rr")[0])) as tree:
        assert {(e.path, e.kind, e.size) for e in tree.entries()} == on_disk
        assert all(isinstance(e.ref, IsoRef) for e in tree.entries())


# -- labels and name spaces ----------------------------------------------------

@pytest.mark.parametrize("style,tool,reader,spaces", STYLE_CASES, ids=CASE_IDS)
def test_volume_label_and_namespaces(iso_of, style, tool, reader, spaces):
    iso = iso_of(style, tool)
    with IsoTree.open_path(iso) as tree:
        assert tree.volume_label == DEFAULT_LABEL
        assert tree.namespaces == spaces


def test_volume_label_and_namespaces_on_bad_files(tmp_path):
    with pytest.raises(SourceError, match=r"missing\.iso: no such file"):
        IsoTree.open_path(tmp_path / "missing.iso")
    with pytest.raises(SourceError, match="is a folder"):
        IsoTree.open_path(tmp_path)
    html = tmp_path / "virtio-win.iso"
    html.write_bytes(b"<html><body>404 Not Found</body></html>\n" * 2000)
    with raises_line(SourceError, r"^virtio-win\.iso: not an ISO 9660 image.*fix: re-download"):
        IsoTree.open_path(html)


# -- hardlinks, streaming, opening rules ---------------------------------------

@pytest.mark.parametrize("tool", RR_TOOLS)
def test_hardlinked_copies_share_one_extent_and_read_right(iso_of, upstream, tool):
    _, files = upstream
    with IsoTree.open_path(iso_of("rr", tool)) as tree:
        by_path = {e.path: e for e in tree.entries()}
        pairs = [("viostor/w7/amd64/viostor.sys", "viostor/2k8R2/amd64/viostor.sys"),
                 ("vioinput/w7/amd64/WdfCoInstaller01009.dll", "vioinput/2k8R2/amd64/WdfCoInstaller01009.dll"),
                 ("viostor/w10/amd64/viostor.sys", "amd64/w10/viostor.sys"),
                 ("viostor/w10/x86/viostor.inf", "i386/w10/viostor.inf")]
        for a, b in pairs:
            assert by_path[a].ref.offset == by_path[b].ref.offset, (a, b)
            for p in (a, b):
                with tree.open(by_path[p]) as fp:
                    assert fp.read() == files[p]
        assert by_path["viostor/w7/x86/viostor.sys"].ref.offset != by_path["viostor/w7/amd64/viostor.sys"].ref.offset


def test_streams_in_bounded_chunks(tmp_path):
    big = hashlib.shake_256(b"big").digest(CHUNK * 2 + 12345)
    make_upstream_tree(tmp_path / "src", listing=["viostor/w7/amd64/viostor.inf"],
                       extra={"viostor/w7/amd64/viostor.pdb": big, "empty.txt": b""})
    iso = make_iso(tmp_path / "src", tmp_path / "big.iso", tool=iso_tools("rr")[0])
    with IsoTree.open_path(iso) as tree:
        by_path = {e.path: e for e in tree.entries()}
        with tree.open(by_path["viostor/w7/amd64/viostor.pdb"]) as fp:
            sizes = []
            while chunk := fp.read(CHUNK * 4):
                sizes.append(len(chunk))
            assert sizes == [CHUNK, CHUNK, 12345]
            assert fp.read(10) == b""
            fp.seek(CHUNK * 2)
            assert fp.tell() == CHUNK * 2 and fp.read() == big[CHUNK * 2:]
        with tree.open(by_path["viostor/w7/amd64/viostor.pdb"]) as a, tree.open(by_path["empty.txt"]) as b:
            assert a.read(5) == big[:5] and b.read() == b"" and a.read(5) == big[5:10]  # independent positions


def test_open_refuses_folders_foreign_entries_and_closed_trees(iso_of):
    iso = iso_of("rr", iso_tools("rr")[0])
    with IsoTree.open_path(iso) as one, IsoTree.open_path(iso) as two:
        folder = next(e for e in one.entries() if e.kind == EntryKind.DIR)
        file = next(e for e in one.entries() if e.kind == EntryKind.FILE)
        with pytest.raises(SourceError, match="is a dir, not a file"), one.open(folder):
            pass
        with pytest.raises(ValueError, match="not listed by this IsoTree"), two.open(file):
            pass
        with pytest.raises(ValueError, match="not listed by this IsoTree"), \
                one.open(Entry(file.path, EntryKind.FILE, file.size, "/etc/passwd")):
            pass
    with pytest.raises(ValueError, match="closed"), one.open(file):
        pass


# -- hostile and damaged images --------------------------------------------------

@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working directory; tests assert it stays empty."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _attack_cases():
    for kind in NAME_ATTACKS:
        tools = RR_TOOLS if kind == "traversal" else [None]
        for tool in tools:
            yield pytest.param(kind, tool, id=f"{kind}-{tool or 'default'}")


@pytest.mark.parametrize("kind,tool", list(_attack_cases()))
def test_unsafe_names_are_refused_before_anything_is_written(tmp_path, sandbox, kind, tool):
    if tool:
        require_tool(tool)
    hostile = make_hostile_iso(tmp_path / "evil" / "virtio-win.iso", kind, tool=tool)
    assert hostile.bad_path
    before = snapshot(tmp_path)
    with IsoTree.open_path(hostile.path) as tree, pytest.raises(UnsafePathError) as info:
        tree.entries()
    line = info.value.render()
    assert "\n" not in line
    assert line.startswith("virtio-win.iso: ")
    assert repr(hostile.bad_path) in line
    assert "fix: do not use this image" in line
    assert snapshot(tmp_path) == before
    assert not any(sandbox.iterdir())


@pytest.mark.parametrize("tool", RR_TOOLS)
def test_symlinks_are_reported_never_followed(tmp_path, sandbox, tool):
    require_tool(tool)
    hostile = make_hostile_iso(tmp_path / "sym.iso", "symlink", tool=tool)
    with IsoTree.open_path(hostile.path) as tree:
        entries = {e.path: e for e in tree.entries()}
        link = entries["viostor/w7/amd64/viostor.sys"]
        assert (link.kind, link.size, link.ref.symlink_target) == (EntryKind.SYMLINK, 0, "/etc/passwd")
        assert entries["NetKVM/w7/x86"].kind == EntryKind.SYMLINK
        assert not any(p.startswith("NetKVM/w7/x86/") for p in entries)
        with pytest.raises(SourceError, match=r"'viostor/w7/amd64/viostor.sys' is a symlink to '/etc/passwd'"), \
                tree.open(link):
            pass
    assert not any(sandbox.iterdir())


@pytest.mark.parametrize("tool", RR_TOOLS)
def test_case_clashes_are_listed_for_the_caller(tmp_path, tool):
    require_tool(tool)
    hostile = make_hostile_iso(tmp_path / "clash.iso", "case-clash", tool=tool)
    with IsoTree.open_path(hostile.path) as tree:
        entries = tree.entries()
        clashes = case_clashes(e.path for e in entries)
        assert clashes == [("viostor/w7/amd64/VIOSTOR.SYS", "viostor/w7/amd64/viostor.sys")]
        with pytest.raises(UnsafePathError, match=r"clash\.iso: names differ only by case"):
            check_no_case_clash([e.path for e in entries], tree.display)


@pytest.mark.parametrize("tool", RR_TOOLS)
def test_truncated_image_is_a_clear_source_error(tmp_path, sandbox, tool):
    require_tool(tool)
    hostile = make_hostile_iso(tmp_path / "virtio-win-0.1.285.iso", "truncated", tool=tool)
    with IsoTree.open_path(hostile.path) as tree, pytest.raises(SourceError) as info:
        tree.entries()
    line = info.value.render()
    assert line.startswith("virtio-win-0.1.285.iso: truncated: ")
    assert f"cut off: {hostile.bad_path!r}" in line  # the file the download stopped in comes first
    assert "fix: re-download the ISO" in line
    # No pycdlib exception chained into the report.
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    assert not any(sandbox.iterdir())


@pytest.mark.parametrize("kind,message", [("truncated-head", "damaged or not an ISO 9660 image"),
                                          ("garbage", "not an ISO 9660 image")])
def test_unreadable_images_fail_at_open(tmp_path, kind, message):
    hostile = make_hostile_iso(tmp_path / "bad.iso", kind)
    with raises_line(SourceError, rf"^bad\.iso: {message}.*; fix: re-download"):
        IsoTree.open_path(hostile.path)


def test_not_a_file_at_all(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.iso: no such file"):
        IsoTree.open_path(tmp_path / "nope.iso")
    with pytest.raises(SourceError, match="is a folder"):
        IsoTree.open_path(tmp_path)
    empty = tmp_path / "empty.iso"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty.iso: not an ISO 9660 image \(only 0 bytes\)"):
        IsoTree.open_path(empty)


def test_short_read_after_listing_is_an_error_not_short_data(tmp_path):
    # pycdlib would return the short data silently; IsoTree must not.
    make_upstream_tree(tmp_path / "src", listing=["viostor/w7/amd64/viostor.inf"],
                       extra={"viostor/w7/amd64/viostor.pdb": hashlib.shake_256(b"x").digest(300_000)})
    iso = make_iso(tmp_path / "src", tmp_path / "v.iso", tool=iso_tools("rr")[0])
    with IsoTree.open_path(iso) as tree:
        pdb = next(e for e in tree.entries() if e.path.endswith(".pdb"))
        os.truncate(iso, pdb.ref.offset + 1000)  # the image shrinks under us
        with tree.open(pdb) as fp, pytest.raises(
                SourceError, match=r"v.iso: truncated: 'viostor/w7/amd64/viostor.pdb' ends after 1000 of 300000 bytes"):
            fp.read(CHUNK)


def test_mutated_images_never_escape_as_tracebacks(tmp_path):
    make_upstream_tree(tmp_path / "src", listing=builtin_listing()[:12])
    data = make_iso(tmp_path / "src", tmp_path / "base.iso", tool=iso_tools("rr")[0]).read_bytes()
    rng = random.Random(20250311)
    outcomes = {"ok": 0, "error": 0}
    target = tmp_path / "m.iso"
    for _ in range(150):
        mutated = bytearray(data)
        for _ in range(rng.choice([1, 4, 32])):
            # Volume descriptors, path tables and directory records live here.
            mutated[rng.randrange(16 * 2048, min(len(mutated), 48 * 2048))] = rng.randrange(256)
        target.write_bytes(mutated)
        try:
            with IsoTree.open_path(target) as tree:
                read_all(tree)
            outcomes["ok"] += 1
        except PipelineError as exc:
            assert "\n" not in exc.render()
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]  # both paths were exercised


# -- the real 2025 layout (the realdata fixture) ---------------------------------

@pytest.mark.realdata
def test_real_2025_listing_round_trips_with_real_infs(realdata, tmp_path):
    files = make_upstream_tree(tmp_path / "src", listing=realdata / "listings/virtio-win-iso-2025.txt",
                               realdata=realdata, readonly=True)
    assert len(files) == 1129
    for path, sha1 in {"viostor/w7/amd64/viostor.inf": "506e9f7bc72836b2487fc35d8303273eb441653e",
                       "viostor/2k8R2/amd64/viostor.inf": "506e9f7bc72836b2487fc35d8303273eb441653e",
                       "NetKVM/w7/x86/netkvm.inf": "77a111cfb4cff4ab46265537a20057f66141d853",
                       "vioinput/w7/amd64/vioinput.inf": "11e1ea4f421542ffdeea5fd4dba6792a76b64f09"}.items():
        assert hashlib.sha1(files[path]).hexdigest() == sha1
    iso = make_iso(tmp_path / "src", tmp_path / "virtio-win-0.1.285.iso", tool=iso_tools("rr")[0])
    with IsoTree.open_path(iso) as tree:
        assert (tree.reader, tree.volume_label) == ("rr", DEFAULT_LABEL)
        assert read_all(tree) == files
    make_writable(tmp_path / "src")


# -- the fixture builders themselves ---------------------------------------------

def test_builtin_listing_keeps_the_real_traps():
    paths = set(builtin_listing())
    assert len(paths) == 187
    for path in ("NetKVM/w7/amd64/netkvm.inf", "viostor/w7/x86/viostor.sys", "viostor/2k8R2/amd64/viostor.sys",
                 "viostor/w8/x86/viostor.inf", "viostor/w10/amd64/viostor.inf", "viostor/w11/amd64/viostor.inf",
                 "amd64/w10/viostor.inf", "i386/w10/vioscsi.sys", "vioinput/w7/x86/WdfCoInstaller01009.dll",
                 "vioinput/w7/amd64/viohidkmdf.sys", "vioinput/w8/amd64/WdfCoInstaller01011.dll",
                 "viostor/w7/amd64/viostor.pdb", "virtio-win_license.txt", "data/info.json"):
        assert path in paths
    assert not any(p.startswith("amd64/w7/") for p in paths), "upstream never has an amd64/w7 auto tree"


def test_stand_in_binaries_have_the_machine_of_their_folder():
    for path, machine in (("viostor/w7/x86/viostor.sys", 0x14C), ("i386/w10/viostor.sys", 0x14C),
                          ("viostor/w7/amd64/viostor.sys", 0x8664), ("vioinput/w7/amd64/WdfCoInstaller01009.dll",
                                                                     0x8664)):
        pe = pefile.PE(data=upstream_file_bytes(path), fast_load=True)
        assert pe.FILE_HEADER.Machine == machine
        assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()
    big = upstream_file_bytes("viostor/w7/amd64/viostor.sys", payload="realistic")
    pe = pefile.PE(data=big, fast_load=True)
    assert len(big) > 100_000 and pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()
    assert upstream_file_bytes("viostor/2k8R2/amd64/viostor.sys") == upstream_file_bytes(
        "viostor/w7/amd64/viostor.sys")


def test_synthetic_infs_are_shaped_like_the_real_ones():
    w7 = synthetic_inf("viostor/w7/x86/viostor.inf").decode("ascii")
    assert "\r\n" in w7 and "\n" not in w7.replace("\r\n", "")
    assert "%VENDOR% = VioStor,NTx86.6.1" in w7 and "[VioStor.NTx86.6.1]" in w7
    assert "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01, PCI\\VEN_1AF4&DEV_1042" in w7
    assert "AddService = viostor, 0x00000002" in w7 and "StartType      = 0" in w7
    assert "NTamd64.6.2" in synthetic_inf("viostor/w8/amd64/viostor.inf").decode()
    assert "NTamd64.10.0" in synthetic_inf("amd64/w10/viostor.inf").decode()
    vioinput = synthetic_inf("vioinput/w7/amd64/vioinput.inf", ["WdfCoInstaller01009.dll"]).decode()
    assert '"WdfCoInstaller01009.dll,WdfCoInstaller"' in vioinput and "KmdfLibraryVersion = 1.9" in vioinput
    assert "AddService = viohidkmdf" in vioinput and "DEV_1052&SUBSYS_11001AF4&REV_01" in vioinput


def test_tree_is_deterministic_readonly_and_has_info_json(tmp_path):
    one = make_upstream_tree(tmp_path / "a", readonly=True)
    two = make_upstream_tree(tmp_path / "b")
    assert one == two
    sys_file = tmp_path / "a/viostor/w7/amd64/viostor.sys"
    assert stat.S_IMODE(sys_file.stat().st_mode) == 0o444
    assert stat.S_IMODE(sys_file.parent.stat().st_mode) == 0o555
    assert sys_file.stat().st_ino == (tmp_path / "a/viostor/2k8R2/amd64/viostor.sys").stat().st_ino
    drivers = json.loads(one["data/info.json"])["drivers"]
    entry = next(d for d in drivers if d["inf_path"] == "viostor/w7/amd64/viostor.inf")
    assert entry == {"arch": "amd64", "driver_version": "06/07/2019,61.77.104.17200",
                     "inf_path": "viostor/w7/amd64/viostor.inf", "name": "Red Hat VirtIO SCSI controller",
                     "windows_version": "w7"}
    make_writable(tmp_path / "a")
    assert stat.S_IMODE(sys_file.stat().st_mode) == 0o644


@pytest.mark.parametrize("tool", ["xorriso", "pycdlib"])
def test_iso_builds_are_repeatable(upstream, tmp_path, tool):
    require_tool(tool)
    a = make_iso(upstream[0], tmp_path / "a.iso", tool=tool).read_bytes()
    b = make_iso(upstream[0], tmp_path / "b.iso", tool=tool).read_bytes()
    assert a == b


def test_old_style_joliet_label_is_cut_to_16_characters_like_mkisofs(iso_of):
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(iso_of("rr-joliet", "pycdlib")))
    try:
        assert iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip() == "virtio-win-0.1.2"
    finally:
        iso.close()


def test_hostile_kinds_are_documented():
    assert set(NAME_ATTACKS) | {"symlink", "case-clash", "truncated", "truncated-head", "garbage"} == set(HOSTILE_KINDS)
    assert have_tool("pycdlib")


def _multi_extent_iso(tmp_path: Path, style: str, finished: bool = True) -> Path:
    """An ISO whose ``sources/install.wim`` is stored in two extents, as ISO 9660 level 3 stores a file of 4 GiB.

    xorriso writes two files, install.wim (one 2048-byte block of A) and install.wiz
    (1000 bytes of B); their directory records are then patched into one file's two
    records: the second renamed to install.wim in every name space, the first flagged
    multi-extent (ECMA-119 9.1.6, file flag bit 7). ``finished=False`` flags the last
    record too, as if the record of a further extent were missing.
    """
    require_tool("xorriso")
    src = tmp_path / "src"
    (src / "sources").mkdir(parents=True)
    (src / "sources" / "install.wim").write_bytes(b"A" * 2048)
    (src / "sources" / "install.wiz").write_bytes(b"B" * 1000)
    iso = tmp_path / f"{style}.iso"
    extra = {"rr": ["-r"], "joliet": ["-J"], "iso9660": []}[style]
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", *extra, "-o", str(iso), str(src)], check=True,
                   capture_output=True)
    data = bytearray(iso.read_bytes())
    for old, new in ((b"INSTALL.WIZ;1", b"INSTALL.WIM;1"), (b"install.wiz", b"install.wim"),
                     ("install.wiz".encode("utf-16-be"), "install.wim".encode("utf-16-be"))):
        data[:] = data.replace(old, new)
    for ident in (b"INSTALL.WIM;1", "install.wim".encode("utf-16-be")):
        # Each directory record: length byte, ..., flags at 25, identifier length at 32, identifier at 33.
        starts = [m.start() - 33 for m in re.finditer(re.escape(ident), data)
                  if data[m.start() - 1] == len(ident)]
        for first, second in zip(starts[::2], starts[1::2], strict=True):
            assert second == first + data[first], "the two records are not adjacent"
            data[first + 25] |= 0x80
            if not finished:
                data[second + 25] |= 0x80
    iso.write_bytes(bytes(data))
    return iso


@pytest.mark.parametrize("style", ["rr", "joliet", "iso9660"])
def test_a_file_stored_in_several_extents_reads_as_one(tmp_path, style):
    """An install.wim of 4 GiB or more is one file in two or more extents, never a name that appears twice."""
    with IsoTree.open_path(_multi_extent_iso(tmp_path, style)) as tree:
        files = {e.path.lower(): e for e in tree.entries() if e.kind == EntryKind.FILE}
        assert set(files) == {"sources/install.wim"}
        entry = files["sources/install.wim"]
        assert entry.size == 3048
        with tree.open(entry) as fp:
            assert fp.read() == b"A" * 2048 + b"B" * 1000
        with tree.open(entry) as fp:
            fp.seek(2040)
            assert fp.read(16) in (b"A" * 8, b"A" * 8 + b"B" * 8)  # a read may stop at the extent's end
            assert fp.read(8) == b"B" * 8


def test_a_multi_extent_file_missing_its_last_record_is_named_as_such(tmp_path):
    with IsoTree.open_path(_multi_extent_iso(tmp_path, "iso9660", finished=False)) as tree, \
            pytest.raises(SourceError) as exc:
        tree.entries()
    assert "several extents" in exc.value.message and "install.wim" in exc.value.message.lower()

"""Benchmarks: our steps against baseline tools on the same data, printed as ratios in one run.

    python bench/run.py [--size-mb 300] [--iso-mb 636] [--service-mb 3000] [--only GROUP] [--keep DIR]

Each measured step runs in its own process so its wall time and peak RSS are its own.
Ratios (ours / baseline) are what to compare across machines; absolute times are shown
for context. Nothing here asserts: tests never time things.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The real-data folder the tests read (tests/conftest.py), and the file count of its 2025 ISO listing.
REALDATA = REPO.parent / "shared" / "realdata"
REAL_LISTING_FILES = 1129
sys.path.insert(0, str(REPO))


# A small wrapper process runs each step: on Linux a forked child starts with its
# parent's RSS, so measuring children of this (large) process would overstate them.
_WRAP = ("import resource, subprocess, sys\n"
         "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
         "sys.stderr.write('\\nMAXRSS %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
         "sys.exit(r.returncode)\n")


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run a command; return (seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    full = {**os.environ, **(env or {})}
    # As installed tools run: with compiled bytecode (a sandbox may switch writing it off).
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-c", _WRAP, *argv], cwd=cwd, env=full,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench step failed: {' '.join(argv)}\n{proc.stderr[-2000:]}")
    rss_kib = int(proc.stderr.rsplit("MAXRSS ", 1)[1].split()[0])
    return elapsed, rss_kib // 1024


def best_of(n: int, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
            before: list[str] | None = None) -> tuple[float, int]:
    results = []
    for _ in range(n):
        if before:
            subprocess.run(before, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        results.append(run(argv, cwd, env))
    return min(r[0] for r in results), max(r[1] for r in results)


def make_project(root: Path, total_mb: int) -> None:
    """A project whose pack holds ~total_mb of incompressible stand-in driver payload."""
    from aero_media.devtools.pestub import build_pe
    from aero_media.devtools.samplepack import placeholder_catalog
    from aero_media.paths import MediaLayout

    (root / "specs").mkdir(parents=True)
    for name in ("schema.json", "devices.yaml", "devices.schema.json", "sample.yaml"):
        shutil.copyfile(REPO / "specs" / name, root / "specs" / name)
    shutil.copyfile(REPO / "dodo.py", root / "dodo.py")
    pack = root / "prebuilt" / "sample"
    shutil.copytree(REPO / "prebuilt" / "sample", pack)
    per_file = total_mb * 1024 * 1024 // 6
    rnd = os.urandom(1024 * 1024)
    for arch in ("x86", "amd64"):
        for drv in ("viostor", "netkvm", "vioinput"):
            d = pack / MediaLayout.STAGED.driver_dir(arch, drv)
            with open(d / f"{drv}.bin", "wb") as fp:
                for i in range(per_file // len(rnd)):
                    fp.write(rnd[i % 7:] + rnd[: i % 7])
            (d / f"{drv}.cat").write_bytes(placeholder_catalog(drv, arch))
            assert build_pe


def bench_drivers_iso(tmp: Path, size_mb: int) -> list[str]:
    from aero_media.paths import STAGED_ROOT

    tmp.mkdir(parents=True, exist_ok=True)
    proj = tmp / "proj"
    make_project(proj, size_mb)
    env = {"PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": "1700000000"}
    doit = [sys.executable, "-m", "doit"]
    t_full, rss_full = run(doit, proj, env)
    stage = proj / "build" / "sample" / "stage"
    iso_py = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {str(REPO)!r})\n"
        "from aero_media.media.files import MediaFile; from aero_media.media.isowriter import write_iso\n"
        "root = Path('build/sample/stage')\n"
        "files = [MediaFile(p.relative_to(root).as_posix(), source=p) for p in sorted(root.rglob('*')) if p.is_file()"
        " and p.suffix != '.json']\n"
        "write_iso(files, Path('ours.iso'), 'AERO_VIRTIO', 1700000000)\n"
    )
    t_ours, rss_ours = best_of(5, [sys.executable, "-c", iso_py], proj, env)
    xorriso = shutil.which("xorriso")
    lines = [f"drivers ISO from a {size_mb} MB pack"]
    lines.append("  full doit build (stage+validate, notices, drivers ISO, Guest Tools ISO+zip, both verifies): "
                 f"{t_full:.2f}s, peak RSS {rss_full} MiB")
    if xorriso:
        t_x, rss_x = best_of(5, [xorriso, "-as", "mkisofs", "-quiet", "-J", "-R", "-V", "AERO_VIRTIO", "-o",
                                 "x.iso", str(stage / STAGED_ROOT)], proj)
        lines.append(f"  ISO write: ours {t_ours:.2f}s ({rss_ours} MiB) vs xorriso -as mkisofs -J -R {t_x:.2f}s "
                     f"({rss_x} MiB): ratio {t_ours / t_x:.2f}")
    else:
        lines.append(f"  ISO write: ours {t_ours:.2f}s ({rss_ours} MiB); xorriso not installed, no ratio")
    lines += _fat_disk(proj, env)
    t_noop, rss_noop = best_of(5, doit, proj, env)
    t_py, _ = best_of(5, [sys.executable, "-c", "import doit, pycdlib, yaml, jsonschema"], proj, env)
    lines.append(f"  no-op doit: {t_noop:.2f}s ({rss_noop} MiB); python+imports floor {t_py:.2f}s: "
                 f"ratio {t_noop / t_py:.2f}")
    return lines


def _fat_disk(proj: Path, env: dict[str, str]) -> list[str]:
    """Our FAT32 fixed-VHD writer against mkfs.fat + mcopy of the same staged tree (same disk size)."""
    from aero_media.fsutil import walk
    from aero_media.media.vhd import disk_size
    from aero_media.paths import STAGED_ROOT

    stage = proj / "build" / "sample" / "stage" / STAGED_ROOT
    payload = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in walk(stage) for f in fs)
    size = disk_size(payload, None)
    fat_py = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {str(REPO)!r})\n"
        "import json; from aero_media.media.files import MediaFile\n"
        "from aero_media.media.fatwriter import write_fat_disk\n"
        "stage = Path('build/sample/stage')\n"
        # As the pipeline does: the stage manifests' sha256 stand for the bytes (no second hash).
        "files = [MediaFile(f['path'][5:], source=stage / f['path'], sha256=f['sha256'])\n"
        "         for a in ('x86', 'amd64') for f in json.loads((stage / f'{a}.json').read_text())['files']]\n"
        "write_fat_disk(files, Path('ours.vhd'), 'AERO', 1700000000)\n"
    )
    t_ours, rss_ours = best_of(3, [sys.executable, "-c", fat_py], proj, env)
    mkfs, mcopy = shutil.which("mkfs.fat"), shutil.which("mcopy")
    line = f"  FAT disk ({size // 2**20} MiB, {payload / 2**20:.0f} MB payload): ours {t_ours:.2f}s ({rss_ours} MiB)"
    if not (mkfs and mcopy):
        return [line + "; mkfs.fat/mcopy not installed, no ratio"]
    script = (f"set -e; rm -f x.img; {mkfs} -C -F 32 -n AERO x.img {size // 1024} >/dev/null; "
              f"{mcopy} -s -i x.img {stage}/* ::/")
    t_base, rss_base = best_of(3, ["sh", "-c", script], proj, {"MTOOLSRC": "/dev/null", "MTOOLS_SKIP_CHECK": "1"})
    return [line + f" vs mkfs.fat + mcopy -s {t_base:.2f}s ({rss_base} MiB): ratio {t_ours / t_base:.2f}"]


def make_upstream_project(root: Path, iso_mb: int) -> Path:
    """A project with a virtio-win-iso spec reading an upstream-like ISO of about ``iso_mb`` MB."""
    from tests.lib.project import make_project, write_spec
    from tests.lib.upstream import make_iso, make_upstream_tree

    make_project(root, with_sample=False)
    shutil.copyfile(REPO / "dodo.py", root / "dodo.py")
    src = root / "src"
    # The real 2025 listing when the real-data folder is there (1,129 files: per-file costs show, as on a real
    # ISO); else the embedded subset, padded with small files to the same count.
    listing = REALDATA / "listings" / "virtio-win-iso-2025.txt"
    if listing.is_file():
        make_upstream_tree(src, listing=listing, payload="realistic")
    else:
        make_upstream_tree(src, payload="realistic")
        count = sum(1 for p in src.rglob("*") if p.is_file())
        pad = src / "misc"
        pad.mkdir(exist_ok=True)
        for i in range(max(REAL_LISTING_FILES - count, 0)):
            (pad / f"file{i:04d}.txt").write_bytes(os.urandom(2048))
    # Everything that is not a Windows 7 driver: the bulk of a real ISO.
    filler = src / "guest-agent"
    filler.mkdir(exist_ok=True)
    # Hard links (identical upstream files) are stored once in the ISO: count each inode once.
    stats = [p.stat() for p in src.rglob("*") if p.is_file()]
    have = sum({(st.st_dev, st.st_ino): st.st_size for st in stats}.values())
    rnd = os.urandom(1024 * 1024)
    left = max(iso_mb * 1024 * 1024 - have, 0)
    n = 0
    while left > 0:
        chunk = min(left, 100 * 1024 * 1024)
        with open(filler / f"filler-{n}.msi", "wb") as fp:
            for i in range(chunk // len(rnd)):
                fp.write(rnd[i % 13:] + rnd[: i % 13])
        left -= chunk
        n += 1
    iso = make_iso(src, root / "virtio-win.iso", style="rr")
    shutil.rmtree(src)
    drivers = [{"name": "viostor", "device": "virtio-blk", "required": True},
               {"name": "netkvm", "device": "virtio-net", "required": True},
               {"name": "vioinput", "device": "virtio-input", "required": False}]
    from aero_media.fsutil import sha256_file

    # Pinned, as `aero-media pin` leaves a spec: the media record the pin while the ISO is hashed.
    base = {"schema_version": 1, "drivers": drivers,
            "checks": {"placeholder_catalogs": "allow"},  # fixture catalogs are placeholders
            "source": {"kind": "virtio-win-iso", "path": "virtio-win.iso", "sha256": sha256_file(iso)[0]}}
    write_spec(root, "vw", {**base, "name": "vw", "default": True})
    # The cold-build target covers the drivers ISO and the Guest Tools: the same spec without the FAT disk.
    write_spec(root, "vwiso", {**base, "name": "vwiso", "outputs": {"fat_disk": {"enabled": False}}})
    return iso


def bench_upstream(tmp: Path, iso_mb: int) -> list[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(REPO), "AERO_MEDIA_CACHE": str(tmp / "cache")}
    big = tmp / "big"
    iso = make_upstream_project(big, iso_mb)
    size_mb = iso.stat().st_size / 2**20
    doit = [sys.executable, "-m", "doit"]
    clean = ["rm", "-rf", "build", ".doit.db"]
    t_ours, rss_ours = best_of(3, [*doit, "extract:vw", "prove:vw"], big, env, before=clean)
    extracted = big / "build" / "vw" / "extract"
    payload = sum(p.stat().st_size for p in extracted.rglob("*") if p.is_file())
    t_hash, _ = best_of(3, ["sha256sum", str(iso)], big)
    t_copy, _ = best_of(3, ["cp", "-r", str(extracted), str(tmp / "copy")], big,
                        before=["rm", "-rf", str(tmp / "copy")])
    floor = t_hash + t_copy
    files = int(subprocess.run(["sh", "-c", f"xorriso -indev {iso} -find / -type f 2>/dev/null | wc -l"],
                               capture_output=True, text=True).stdout or 0) if shutil.which("xorriso") else 0
    lines = [f"upstream ISO: {size_mb:.0f} MB, {files or 'unknown number of'} files, Windows 7 payload "
             f"{payload / 2**20:.1f} MB",
             f"  cold fetch(local path)+extract+prove (hash): ours {t_ours:.2f}s (peak RSS {rss_ours} MiB) vs floor "
             f"sha256sum+cp {floor:.2f}s: ratio {t_ours / floor:.2f}"]
    prep = ["sh", "-c", f"rm -rf build .doit.db && PYTHONPATH={REPO} AERO_MEDIA_CACHE={tmp / 'cache'} "
                        f"{sys.executable} -m doit fetch:vw >/dev/null 2>&1"]
    t_extract, rss_extract = best_of(3, [*doit, "extract:vw"], big, env, before=prep)
    lines.append(f"  of which extract alone (ISO already proven): {t_extract:.2f}s, peak RSS {rss_extract} MiB")
    subset = [str(p.relative_to(extracted)) for p in extracted.rglob("*") if p.is_file()]
    sevenz = shutil.which("7z")
    xorriso = shutil.which("xorriso")
    if sevenz:
        t7, _ = best_of(3, [sevenz, "x", "-y", f"-o{tmp / 'x7'}", str(iso), *subset], big,
                        before=["rm", "-rf", str(tmp / "x7")])
        lines.append(f"  vs 7z x of the same subset (no hashing) {t7:.2f}s: extract-alone ratio {t_extract / t7:.2f}")
    if xorriso:
        args = [xorriso, "-osirrox", "on", "-indev", str(iso)]
        for rel in subset:
            args += ["-extract", "/" + rel, str(tmp / "xo" / rel)]
        tx, _ = best_of(3, args, big, before=["rm", "-rf", str(tmp / "xo")])
        lines.append(f"  vs xorriso -osirrox of the same subset (no hashing) {tx:.2f}s: extract-alone ratio "
                     f"{t_extract / tx:.2f}")
    lines += _cold_build(tmp, big, iso, env, subset)
    run(doit, big, env)
    # The cold builds just wrote hundreds of MB: flush them first, or their writeback lands in
    # the big project's no-op timing and not in the small one's.
    os.sync()
    t_big, rss_big = best_of(7, doit, big, env)
    small = tmp / "small"
    make_upstream_project(small, 10)
    run(doit, small, env)
    os.sync()
    t_small, _ = best_of(7, doit, small, env)
    lines.append(f"  no-op doit: {size_mb:.0f} MB ISO {t_big:.3f}s vs 10 MB ISO {t_small:.3f}s: ratio "
                 f"{t_big / t_small:.2f} (target <= 1.1), peak RSS {rss_big} MiB")
    return lines


def _cold_build(tmp: Path, big: Path, iso: Path, env: dict[str, str], subset: list[str]) -> list[str]:
    """A whole cold build (drivers ISO, Guest Tools, both verifies) vs the read-and-hash floor and a manual flow."""
    doit = [sys.executable, "-m", "doit"]
    clean = ["rm", "-rf", "build", "dist"]
    openssl = shutil.which("openssl")
    lines = []
    if openssl:
        # Paired runs (a cold build, then openssl) and the median pair's ratio: the cores are shared, and load
        # that comes and goes moves single timings more than the change being measured.
        pairs = []
        for _ in range(5):
            subprocess.run(clean, cwd=big, check=True)
            t_o, rss_o = run(doit, big, env)
            t_s, _ = run([openssl, "dgst", "-sha256", str(iso)], big)
            pairs.append((t_o / t_s, t_o, t_s, rss_o))
        ratio, t_o, t_s, rss_o = sorted(pairs)[2]
        lines.append(f"  cold full build with every output (drivers ISO, FAT disk, Guest Tools, three verifies) vs "
                     f"openssl dgst -sha256 of the ISO: {t_o:.2f}s (peak RSS {rss_o} MiB) vs {t_s:.2f}s: ratio "
                     f"{ratio:.2f} (target <= 2.0; median of 5 paired runs: "
                     f"{', '.join(f'{p[0]:.2f}' for p in pairs)})")
    t_all, rss_all = best_of(3, doit, big, env, before=clean)
    t_cold, rss_cold = best_of(3, [*doit, "build:vwiso"], big, env, before=clean)
    lines += [f"  cold full build with every output (drivers ISO, FAT disk, Guest Tools, three verifies): "
              f"{t_all:.2f}s, peak RSS {rss_all} MiB",
              f"  cold build of the drivers ISO and Guest Tools (fetch local ISO, extract, stage+validate, notices, "
              f"drivers ISO, Guest Tools, both verifies): {t_cold:.2f}s, peak RSS {rss_cold} MiB"]
    if openssl:
        t_ssl, _ = best_of(3, [openssl, "dgst", "-sha256", str(iso)], big)
        lines.append(f"  vs openssl dgst -sha256 of the ISO (the read-and-hash floor) {t_ssl:.2f}s: "
                     f"ratio {t_cold / t_ssl:.2f} (target <= 2.0); every output {t_all / t_ssl:.2f}")
    sevenz, xorriso = shutil.which("7z"), shutil.which("xorriso")
    if sevenz and xorriso:
        work = tmp / "manual"
        listing = tmp / "manual-subset.txt"
        listing.write_text("".join(f"{rel}\n" for rel in subset))
        script = (f"set -e; sha256sum {iso} >/dev/null; "
                  f"{sevenz} x -y -o{work}/x {iso} @{listing} >/dev/null; "
                  f"cp -r {work}/x {work}/stage; "
                  f"{xorriso} -as mkisofs -quiet -J -R -V AERO_VIRTIO -o {work}/drivers.iso {work}/stage")
        t_manual, _ = best_of(3, ["sh", "-c", script], big, before=["rm", "-rf", str(work)])
        lines.append(f"  vs the manual flow (sha256sum + 7z x of the Win7 subset + cp + xorriso -as mkisofs -J -R) "
                     f"{t_manual:.2f}s: ratio {t_cold / t_manual:.2f} (target <= 0.6); every output "
                     f"{t_all / t_manual:.2f}")
    return lines


# -- servicing a retail-size Windows 7 DVD ---------------------------------------------

def _noise(path: Path, size: int, seed: int) -> None:
    """``size`` bytes of incompressible data (a rotated random block, so no two files share a blob)."""
    rnd = os.urandom(1024 * 1024)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fp:
        left = size
        i = seed * 7919
        while left > 0:
            cut = i % len(rnd)
            block = (rnd[cut:] + rnd[:cut])[:left]
            fp.write(block)
            left -= len(block)
            i += 1


def _pad_hive(hive: Path, mib: int) -> None:
    """Grow a hive to about ``mib`` MiB with keys of REG_SZ values, as a retail SOFTWARE hive is tens of MiB."""
    per_value = 1000  # characters: 2 KB in the hive (UTF-16)
    values = mib * 1024 * 1024 // 2800  # what one value costs the hive, with its key's share
    lines = ["Windows Registry Editor Version 5.00", "", "[\\AeroBenchPadding]", ""]  # parents first
    for key in range(0, values, 50):
        lines += [f"[\\AeroBenchPadding\\K{key:06d}]"]
        lines += [f'"V{v}"="{(chr(65 + (key + v) % 26)) * per_value}"' for v in range(min(50, values - key))]
        lines.append("")
    reg = hive.with_name(hive.name + ".reg")
    reg.write_text("\n".join(lines) + "\n", encoding="ascii")
    subprocess.run(["hivexregedit", "--merge", str(hive), str(reg)], check=True, capture_output=True)
    reg.unlink()


def _capture(wim: Path, trees: list[tuple[Path, str, dict[str, str]]], boot_index: int = 0) -> None:
    """Capture the trees as images 1..n (later ones as updates of the first: unchanged files are not hashed again)."""
    env = dict(os.environ, LC_ALL="C")
    for i, (tree, name, props) in enumerate(trees, 1):
        cmd = ["wimlib-imagex", "capture" if i == 1 else "append", str(tree), str(wim), name, "--compress=none"]
        if i > 1:
            cmd.append(f"--update-of={i - 1}")
        if i == boot_index:
            cmd.append("--boot")
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        args = [a for k, v in props.items() for a in ("--image-property", f"{k}={v}")]
        subprocess.run(["wimlib-imagex", "info", str(wim), str(i), *args], check=True, capture_output=True, env=env)


def make_retail_iso(root: Path, total_mb: int, editions: int = 4) -> Path:
    """A Windows 7 x64 DVD of retail size: ``editions`` install images sharing most of their payload, each with
    its own padded SOFTWARE/SYSTEM hives and a recovery image, and a two-image boot.wim; ISO 9660 + Joliet with
    El Torito BIOS and UEFI entries, as tests/lib/win7image.py lays the DVD out."""
    from tests.lib.win7image import WINRE, make_iso, make_media, make_winre, win7_properties, windows_tree

    names = ["HomeBasic", "HomePremium", "Professional", "Ultimate", "Starter", "Enterprise"][:editions]
    dvd = root / "dvd"
    make_media(dvd, "amd64", editions=names[:1])  # boot files, media BCDs, setup.exe; the WIMs are replaced below
    trees = root / "trees"
    shared = trees / "shared"  # one folder's files hard-linked into every edition: stored once, as on a DVD
    boot_payload = 160 * 1024 * 1024
    winre_payload = 150 * 1024 * 1024
    per_edition = 24 * 1024 * 1024
    install_payload = max(total_mb * 1024 * 1024 - boot_payload - winre_payload - editions * (per_edition + (56 << 20)),
                          256 * 1024 * 1024)
    chunk = 128 * 1024 * 1024
    for n in range(-(-install_payload // chunk)):
        _noise(shared / f"payload{n:02d}.dat", min(chunk, install_payload - n * chunk), n)
    winre_tree = windows_tree(trees / "winre", edition="WindowsPE", bcd_template=False)
    _noise(winre_tree / "sources" / "boot.sdi.dat", winre_payload, 101)
    winre = make_winre(trees / "winre.wim", "amd64", trees / "winre")
    boot_trees = []
    for i, name in enumerate(("Microsoft Windows PE (x64)", "Microsoft Windows Setup (x64)")):
        t = windows_tree(trees / f"boot{i}", bcd_template=False)
        _pad_hive(t / "Windows/System32/config/SOFTWARE", 12)
        _pad_hive(t / "Windows/System32/config/SYSTEM", 6)
        _noise(t / "Windows/System32/boot-payload.dat", boot_payload // 2, 200 + i)
        if i == 1:
            (t / "setup.exe").write_bytes(b"MZ stand-in for setup.exe\n")
        boot_trees.append((t, name, win7_properties("amd64", "WindowsPE")))
    (dvd / "sources" / "boot.wim").unlink()
    _capture(dvd / "sources" / "boot.wim", boot_trees, boot_index=2)
    install_trees = []
    for i, edition in enumerate(names):
        t = windows_tree(trees / f"install-{edition}", edition=edition)
        _pad_hive(t / "Windows/System32/config/SOFTWARE", 40)
        _pad_hive(t / "Windows/System32/config/SYSTEM", 12)
        _noise(t / "Windows/System32/edition.dat", per_edition, 300 + i)
        (t / WINRE).parent.mkdir(parents=True, exist_ok=True)
        os.link(winre, t / WINRE)
        for f in shared.iterdir():
            os.link(f, t / "Windows" / f.name)
        install_trees.append((t, f"Windows 7 {edition}", win7_properties("amd64", edition)))
    (dvd / "sources" / "install.wim").unlink()
    _capture(dvd / "sources" / "install.wim", install_trees)
    shutil.rmtree(trees)
    shutil.rmtree(root / "dvd-trees", ignore_errors=True)
    iso = make_iso(dvd, root / "win7-retail.iso")
    shutil.rmtree(dvd)
    return iso


def _manual_service(iso: Path, work: Path, viostor: Path, images: int) -> list[str]:
    """The manual flow as a shell script: extract everything, wimlib update each image, repack with xorriso."""
    x = work / "x"
    update = f"echo 'add {viostor} /Windows/System32/drivers/viostor.sys'"
    steps = [f"xorriso -osirrox on -indev {iso} -extract / {x} >/dev/null 2>&1",
             f"chmod -R u+w {x}",
             f"{update} | wimlib-imagex update {x}/sources/boot.wim 2 >/dev/null"]
    steps += [f"{update} | wimlib-imagex update {x}/sources/install.wim {i} >/dev/null" for i in range(1, images + 1)]
    steps.append(f"xorriso -indev {iso} -outdev {work}/manual.iso -boot_image any replay "
                 f"-map {x}/sources/boot.wim /sources/boot.wim -map {x}/sources/install.wim /sources/install.wim "
                 "-commit >/dev/null 2>&1")
    return ["sh", "-c", "set -e; " + "; ".join(steps)]


def bench_service(tmp: Path, total_mb: int, editions: int = 4) -> list[str]:
    from tests.lib.project import expanded_sample

    tmp.mkdir(parents=True, exist_ok=True)
    iso = tmp / "win7-retail.iso"
    if not iso.is_file():  # a kept folder (--keep) reuses the DVD it made
        iso = make_retail_iso(tmp, total_mb, editions)
    pack = expanded_sample(tmp / "pack")
    viostor = pack / "win7" / "amd64" / "viostor" / "viostor.sys"
    size_mb = iso.stat().st_size / 2**20
    subprocess.run(["cat", str(iso)], stdout=subprocess.DEVNULL, check=True)  # warm cache, for both sides
    env = {"PYTHONPATH": str(REPO), "AERO_MEDIA_CACHE": str(tmp / "cache")}
    ours = [sys.executable, "-m", "aero_media", "service-iso", "--windows-iso", str(iso), "--drivers-root",
            str(pack), "--output", str(tmp / "out" / "ours.iso"), "--allow-placeholder-catalogs"]
    work = tmp / "manual"
    manual = _manual_service(iso, work, viostor, editions)
    # Paired runs, ours then the manual flow, each after the other's output is gone and written back (sync):
    # the disk's writeback of 3 GB moves single timings by tens of percent, so the median pair decides.
    pairs = []
    for _ in range(3):
        subprocess.run(["rm", "-rf", str(tmp / "out"), str(work)], check=True)
        subprocess.run(["sync"], check=True)
        t_o, rss_o = run(ours, tmp, env)
        subprocess.run(["rm", "-rf", str(tmp / "out")], check=True)
        subprocess.run(["sync"], check=True)
        t_m, rss_m = run(manual, tmp)
        pairs.append((t_o / t_m, t_o, t_m, rss_o, rss_m))
    shutil.rmtree(tmp / "out", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    ratio, t_ours, t_manual, rss_ours, rss_manual = sorted(pairs)[1]
    t_copy, _ = best_of(2, ["cp", str(iso), str(tmp / "copy.iso")], tmp, before=["rm", "-f", str(tmp / "copy.iso")])
    (tmp / "copy.iso").unlink(missing_ok=True)
    # Memory flat in the ISO's size: the same DVD with a third of the payload, serviced the same way.
    small_dir = tmp / "small"
    small_dir.mkdir(exist_ok=True)
    small = small_dir / "win7-retail.iso"
    if not small.is_file():
        small = make_retail_iso(small_dir, max(total_mb // 3, 800), editions)
    small_cmd = [*ours[:5], str(small), *ours[6:9], str(tmp / "out" / "small.iso"), *ours[10:]]
    _t_small, rss_small = run(small_cmd, tmp, env)
    shutil.rmtree(tmp / "out", ignore_errors=True)
    return [f"service a {size_mb:.0f} MB Windows 7 x64 ISO ({editions} install editions, padded hives)",
            f"  aero-media service-iso {t_ours:.2f}s (peak RSS {rss_ours} MiB) vs manual flow (xorriso -osirrox "
            f"extract, wimlib-imagex update boot.wim#2 and {editions} install images adding viostor.sys, xorriso "
            f"-boot_image any replay) {t_manual:.2f}s (peak RSS {rss_manual} MiB): ratio {ratio:.2f} "
            f"(target <= 1.3; median of 3 paired runs: {', '.join(f'{p[0]:.2f}' for p in pairs)}); "
            f"cp of the ISO {t_copy:.2f}s",
            f"  peak RSS {rss_small} MiB for a {small.stat().st_size / 2**20:.0f} MB DVD, {rss_ours} MiB for "
            f"{size_mb:.0f} MB: ratio {rss_ours / max(rss_small, 1):.2f} (flat: about 1)"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300, help="driver payload of the synthetic pack")
    ap.add_argument("--iso-mb", type=int, default=636, help="size of the synthetic upstream ISO")
    ap.add_argument("--service-mb", type=int, default=3000, help="size of the synthetic Windows 7 DVD")
    ap.add_argument("--only", choices=["drivers-iso", "upstream", "service"], help="run one group")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="aero-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if args.only in (None, "drivers-iso"):
            for line in bench_drivers_iso(tmp / "drivers", args.size_mb):
                print(line, flush=True)
        if args.only in (None, "upstream"):
            for line in bench_upstream(tmp / "upstream", args.iso_mb):
                print(line, flush=True)
        if args.only in (None, "service"):
            for line in bench_service(tmp / "service", args.service_mb):
                print(line, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks: our steps against baseline tools on the same data, printed as ratios in one run.

    python bench/run.py [--size-mb 300] [--iso-mb 600] [--keep DIR]

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
sys.path.insert(0, str(REPO))


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run a command; return (seconds, peak RSS in MiB) of that process tree's largest member."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"bench step failed: {' '.join(argv)}\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss // 1024


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
    from pipeline.pestub import build_pe
    from pipeline.samplepack import placeholder_catalog

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
            d = pack / "win7" / arch / drv
            with open(d / f"{drv}.bin", "wb") as fp:
                for i in range(per_file // len(rnd)):
                    fp.write(rnd[i % 7:] + rnd[: i % 7])
            (d / f"{drv}.cat").write_bytes(placeholder_catalog(drv, arch))
            assert build_pe


def bench_drivers_iso(tmp: Path, size_mb: int) -> list[str]:
    proj = tmp / "proj"
    make_project(proj, size_mb)
    env = {"PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": "1700000000"}
    doit = [sys.executable, "-m", "doit"]
    t_full, rss_full = run(doit, proj, env)
    stage = proj / "build" / "sample" / "stage"
    iso_py = (
        "import sys; from pathlib import Path; sys.path.insert(0, %r)\n"
        "from pipeline.isofs import MediaFile, write_iso\n"
        "root = Path('build/sample/stage')\n"
        "files = [MediaFile(p.relative_to(root).as_posix(), source=p) for p in sorted(root.rglob('*')) if p.is_file()"
        " and p.suffix != '.json']\n"
        "write_iso(files, Path('ours.iso'), 'AERO_VIRTIO', 1700000000)\n" % str(REPO)
    )
    t_ours, rss_ours = best_of(3, [sys.executable, "-c", iso_py], proj, env)
    xorriso = shutil.which("xorriso")
    lines = [f"drivers ISO from a {size_mb} MB pack"]
    lines.append(f"  full doit build (stage+notices+iso+verify): {t_full:.2f}s, peak RSS {rss_full} MiB")
    if xorriso:
        t_x, rss_x = best_of(3, [xorriso, "-as", "mkisofs", "-quiet", "-J", "-R", "-V", "AERO_VIRTIO", "-o",
                                 "x.iso", str(stage / "win7")], proj)
        lines.append(f"  ISO write: ours {t_ours:.2f}s ({rss_ours} MiB) vs xorriso -as mkisofs -J -R {t_x:.2f}s "
                     f"({rss_x} MiB): ratio {t_ours / t_x:.2f}")
    else:
        lines.append(f"  ISO write: ours {t_ours:.2f}s ({rss_ours} MiB); xorriso not installed, no ratio")
    t_noop, rss_noop = best_of(5, doit, proj, env)
    t_py, _ = best_of(5, [sys.executable, "-c", "import doit, pycdlib, yaml, jsonschema"], proj, env)
    lines.append(f"  no-op doit: {t_noop:.2f}s ({rss_noop} MiB); python+imports floor {t_py:.2f}s: "
                 f"ratio {t_noop / t_py:.2f}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300, help="driver payload of the synthetic pack")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="aero-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        for line in bench_drivers_iso(tmp, args.size_mb):
            print(line, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

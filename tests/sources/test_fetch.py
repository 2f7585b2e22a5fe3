"""Fetch stage: local path, verified cache, resumable download, and its failure modes.

Every download is served by tests/lib/httpserver.py on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from aero_media.errors import ChecksumMismatch, FetchError, IncompleteDownload
from aero_media.sources.download import download
from aero_media.sources.fetch import obtain_iso
from aero_media.sources.isocache import FetchResult, cache_file_for
from aero_media.spec.model import Source
from tests.lib.httpserver import (
    DEFAULT_LAST_MODIFIED,
    TestServer,
    etag_for,
    free_port,
    serve,
)

# Deterministic, incompressible-looking payload of a few chunks' worth of bytes.
DATA = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(40_000))  # 1.28 MB
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "virtio-win-0.1.285.iso"
PATH = f"/archive-virtio/virtio-win-0.1.285-1/{NAME}"
FAST = {"backoff": 0.0, "progress": False}


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would intercept 127.0.0.1 requests.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("AERO_MEDIA_PROGRESS", "never")


def iso_source(url: str | None = None, sha256: str | None = SHA, **kw: object) -> Source:
    return Source(kind="virtio-win-iso", url=url, sha256=sha256, **kw)  # type: ignore[arg-type]


def files_under(root: Path) -> list[str]:
    """The cache's entries (its lock files aside)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts)


# --------------------------------------------------------------------------- layout


def test_cache_file_for_layout(tmp_path: Path) -> None:
    url = "https://example.org/archive-virtio/virtio-win-0.1.285-1/virtio-win-0.1.285.iso"
    assert cache_file_for(tmp_path, url, SHA.upper()) == tmp_path / "sha256" / SHA / NAME
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    assert cache_file_for(tmp_path, url, None) == tmp_path / "url" / key / NAME
    # Names come from the URL path only, made safe: no separators, queries or leading dots.
    assert cache_file_for(tmp_path, "https://h/a/my%20file.iso?x=1", None).name == "my_file.iso"
    assert cache_file_for(tmp_path, "https://h/a/..%2F..%2Fetc", None).name == "etc"
    assert cache_file_for(tmp_path, "https://h/", None).name == "download.iso"
    assert cache_file_for(tmp_path, "https://h/.hidden", None).name == "hidden"
    with pytest.raises(FetchError, match="not 64 hex digits"):
        cache_file_for(tmp_path, url, "abc123")


# --------------------------------------------------------------------------- download and cache


def test_full_download_into_content_addressed_cache(tmp_path: Path) -> None:
    with serve({PATH: DATA}) as srv:
        result = obtain_iso(iso_source(srv.url(PATH)), tmp_path, **FAST)
        assert len(srv.requests) == 1
        assert "range" not in srv.requests[0].headers
        assert srv.requests[0].headers["user-agent"].startswith("aero-virtio-media/")
    final = tmp_path / "sha256" / SHA / NAME
    assert result == FetchResult(path=final, sha256=SHA, size=len(DATA), origin="download", url=srv.url(PATH),
                                 expected=SHA)
    assert final.read_bytes() == DATA
    assert files_under(tmp_path) == [f"sha256/{SHA}/{NAME}", f"sha256/{SHA}/{NAME}.json"]
    side = json.loads((tmp_path / "sha256" / SHA / f"{NAME}.json").read_text())
    assert side["url"] == srv.url(PATH) and side["sha256"] == SHA and side["size"] == len(DATA)
    assert side["etag"] == etag_for(DATA) and side["last_modified"] == DEFAULT_LAST_MODIFIED
    assert side["pinned"] is True and side["fetched"].endswith("Z")


def test_cache_hit_makes_no_request(tmp_path: Path) -> None:
    with serve({PATH: DATA}) as srv:
        obtain_iso(iso_source(srv.url(PATH)), tmp_path, **FAST)
        again = obtain_iso(iso_source(srv.url(PATH)), tmp_path, **FAST)
        assert len(srv.requests) == 1
    assert again.origin == "cache" and again.sha256 == SHA and again.path.read_bytes() == DATA
    # With the server gone the cache still answers: no request is even attempted.
    assert obtain_iso(iso_source(srv.url(PATH)), tmp_path, **FAST).origin == "cache"


def test_damaged_cache_file_is_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve({PATH: DATA}) as srv:
        final = cache_file_for(tmp_path, srv.url(PATH), SHA)
        final.parent.mkdir(parents=True)
        final.write_bytes(DATA[:-1] + b"X")
        result = obtain_iso(iso_source(srv.url(PATH)), tmp_path, **FAST)
        assert len(srv.requests) == 1
    assert result.origin == "download" and final.read_bytes() == DATA
    assert "is damaged" in capsys.readouterr().err


def test_url_cache_without_sha_pin_rehashes_against_sidecar(tmp_path: Path) -> None:
    src_kw = {"sha256": None, "expect": {"win7/amd64/viostor/viostor.sys": "0" * 64}}
    with serve({PATH: DATA}) as srv:
        source = iso_source(srv.url(PATH), **src_kw)
        first = obtain_iso(source, tmp_path, **FAST)
        key = hashlib.sha256(srv.url(PATH).encode()).hexdigest()[:16]
        assert first.path == tmp_path / "url" / key / NAME and first.sha256 == SHA
        side = json.loads(first.path.with_name(NAME + ".json").read_text())
        assert side["sha256"] == SHA and side["pinned"] is False

        assert obtain_iso(source, tmp_path, **FAST).origin == "cache"
        assert len(srv.requests) == 1

        # Bit rot in the cache is caught by the sidecar's hash and fetched again.
        first.path.write_bytes(b"Y" + DATA[1:])
        assert obtain_iso(source, tmp_path, **FAST).origin == "download"
        assert len(srv.requests) == 2 and first.path.read_bytes() == DATA


def test_file_placed_in_url_cache_by_hand_is_adopted(tmp_path: Path) -> None:
    source = iso_source("http://127.0.0.1:9/" + NAME, sha256=None, expect={"win7/x86/viostor/viostor.inf": "0" * 64})
    final = cache_file_for(tmp_path, source.url or "", None)
    final.parent.mkdir(parents=True)
    final.write_bytes(DATA)
    result = obtain_iso(source, tmp_path, **FAST)
    assert result.origin == "cache" and result.sha256 == SHA
    assert json.loads(final.with_name(NAME + ".json").read_text())["sha256"] == SHA


# --------------------------------------------------------------------------- resume


def test_resume_after_cut_uses_range_and_if_range(tmp_path: Path) -> None:
    cut = 300_000
    with serve({PATH: DATA}, cut_after=cut, cut_times=1) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, SHA, **FAST)
    first, second = srv.requests
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={cut}-"
    assert second.headers["if-range"] == etag_for(DATA)
    assert result.path.read_bytes() == DATA and result.origin == "download"
    assert files_under(tmp_path) == [NAME, NAME + ".json"]


def test_cut_download_resumes_in_the_next_run(tmp_path: Path) -> None:
    cut = 500_000
    with serve({PATH: DATA}, cut_after=cut, cut_times=1) as srv:
        with pytest.raises(IncompleteDownload):
            download(srv.url(PATH), tmp_path / NAME, SHA, retries=0, **FAST)
        part = tmp_path / (NAME + ".part")
        assert part.stat().st_size == cut and not (tmp_path / NAME).exists()
        assert json.loads((tmp_path / (NAME + ".part.json")).read_text())["etag"] == etag_for(DATA)
        result = download(srv.url(PATH), tmp_path / NAME, SHA, retries=0, **FAST)
    assert srv.requests[1].headers["range"] == f"bytes={cut}-"
    assert result.path.read_bytes() == DATA
    assert not part.exists() and not (tmp_path / (NAME + ".part.json")).exists()


def test_last_modified_is_the_validator_without_etag(tmp_path: Path) -> None:
    with serve({PATH: DATA}, cut_after=1000, cut_times=1, etag=False) as srv:
        download(srv.url(PATH), tmp_path / NAME, SHA, **FAST)
    assert srv.requests[1].headers["if-range"] == DEFAULT_LAST_MODIFIED


def test_no_validator_means_no_splice(tmp_path: Path) -> None:
    # Nothing proves the remote is unchanged, so the next attempt starts from zero.
    with serve({PATH: DATA}, cut_after=1000, cut_times=1, etag=False, last_modified=None) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, SHA, **FAST)
    assert "range" not in srv.requests[1].headers and result.path.read_bytes() == DATA


def test_server_ignoring_range_restarts(tmp_path: Path) -> None:
    with serve({PATH: DATA}, cut_after=400_000, cut_times=1, ranges=False) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, SHA, **FAST)
    assert srv.requests[1].headers["range"] == "bytes=400000-"  # asked, got a 200
    assert result.path.read_bytes() == DATA and result.size == len(DATA)


def test_changed_remote_restarts_instead_of_splicing(tmp_path: Path) -> None:
    new = DATA[::-1]
    with serve({PATH: DATA}, cut_after=600_000, cut_times=1) as srv:
        # No whole-file pin here: only If-Range stands between us and a spliced file.
        with pytest.raises(IncompleteDownload):
            download(srv.url(PATH), tmp_path / NAME, None, retries=0, **FAST)
        srv.files[PATH] = new  # re-spun in place: same URL, new ETag
        result = download(srv.url(PATH), tmp_path / NAME, None, retries=0, **FAST)
    assert srv.requests[1].headers["if-range"] == etag_for(DATA) != etag_for(new)
    assert result.path.read_bytes() == new
    assert result.sha256 == hashlib.sha256(new).hexdigest()


def test_416_drops_the_part_and_starts_over(tmp_path: Path) -> None:
    part = tmp_path / (NAME + ".part")
    with serve({PATH: DATA}) as srv:
        # A stale .part longer than the remote file, with a validator that still matches.
        part.write_bytes(DATA + b"stale tail")
        (tmp_path / (NAME + ".part.json")).write_text(json.dumps(
            {"url": srv.url(PATH), "sha256": None, "etag": etag_for(DATA), "last_modified": None, "size": None}))
        result = download(srv.url(PATH), tmp_path / NAME, None, **FAST)
    assert srv.requests[0].headers["range"] == f"bytes={len(DATA) + 10}-"
    assert "range" not in srv.requests[1].headers and len(srv.requests) == 2
    assert result.path.read_bytes() == DATA


def test_content_range_offset_mismatch_restarts_cleanly(tmp_path: Path) -> None:
    with serve({PATH: DATA}, cut_after=100_000, cut_times=1, range_skew=7) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, SHA, **FAST)
    assert [r.headers.get("range") for r in srv.requests] == [None, "bytes=100000-", None]
    assert result.path.read_bytes() == DATA


def test_resumed_body_claiming_another_file_restarts(tmp_path: Path) -> None:
    with serve({PATH: DATA}, cut_after=100_000, cut_times=1, range_etag='"other"') as srv:
        result = download(srv.url(PATH), tmp_path / NAME, None, **FAST)
    assert [r.headers.get("range") for r in srv.requests] == [None, "bytes=100000-", None]
    assert result.path.read_bytes() == DATA


def test_complete_part_is_finished_without_a_request(tmp_path: Path) -> None:
    (tmp_path / (NAME + ".part")).write_bytes(DATA)
    with serve({PATH: DATA}) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, SHA, size=len(DATA), **FAST)
        assert srv.requests == []
    assert result.path.read_bytes() == DATA


# --------------------------------------------------------------------------- failures


def test_sha256_mismatch_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    evil = b"not the pinned iso" * 1000
    with serve({PATH: evil}) as srv, pytest.raises(ChecksumMismatch) as err:
        obtain_iso(iso_source(srv.url(PATH)), tmp_path, spec_display="specs/win7.yaml", **FAST)
    line = err.value.render()
    assert "\n" not in line
    assert srv.url(PATH) in line and SHA in line and hashlib.sha256(evil).hexdigest() in line
    assert "re-spun" in line and "update source.sha256 in specs/win7.yaml" in line and "; fix: " in line
    assert files_under(tmp_path) == []


def test_404_fails_at_once(tmp_path: Path) -> None:
    with serve({}) as srv, pytest.raises(FetchError) as err:
        obtain_iso(iso_source(srv.url(PATH)), tmp_path, retries=3, **FAST)
    assert len(srv.requests) == 1
    assert not isinstance(err.value, IncompleteDownload)
    assert "HTTP 404" in err.value.message and srv.url(PATH) in err.value.message
    assert "source.path" in (err.value.hint or "")


def test_5xx_is_retried(tmp_path: Path) -> None:
    with serve({PATH: DATA}, status=503, status_times=2) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, SHA, retries=2, **FAST)
    assert len(srv.requests) == 3 and result.path.read_bytes() == DATA


def test_5xx_gives_up_after_the_retries(tmp_path: Path) -> None:
    with serve({PATH: DATA}, status=500) as srv, pytest.raises(FetchError) as err:
        download(srv.url(PATH), tmp_path / NAME, SHA, retries=2, **FAST)
    assert len(srv.requests) == 3
    assert "HTTP 500" in err.value.message and "3 attempts" in err.value.message


def test_connection_refused_gives_the_offline_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}{PATH}"
    with pytest.raises(FetchError) as err:
        obtain_iso(iso_source(url), tmp_path, spec_display="specs/win7.yaml", retries=1, **FAST)
    line = err.value.render()
    assert type(err.value) is FetchError
    assert url in line and "connection refused" in line and "2 attempts" in line
    assert "source.path in specs/win7.yaml" in line
    assert str(tmp_path / "sha256" / SHA / NAME) in line  # where to put the file by hand
    assert files_under(tmp_path) == []


def test_retries_are_bounded(tmp_path: Path) -> None:
    # Every response is cut after 1000 bytes, so each try gains a little and none finishes.
    with serve({PATH: DATA}, cut_after=1000) as srv, pytest.raises(IncompleteDownload) as err:
        download(srv.url(PATH), tmp_path / NAME, SHA, retries=3, **FAST)
    assert len(srv.requests) == 4
    msg = err.value.message
    assert srv.url(PATH) in msg and f"received 4000 of {len(DATA)} bytes" in msg
    assert "resume" in (err.value.hint or "")
    assert (tmp_path / (NAME + ".part")).stat().st_size == 4000
    assert not (tmp_path / NAME).exists()


def test_timeout_is_retried(tmp_path: Path) -> None:
    with serve({PATH: DATA}, stall_after=50_000, stall_times=1) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, SHA, timeout=0.3, **FAST)
    assert srv.requests[1].headers["range"] == "bytes=50000-"
    assert result.path.read_bytes() == DATA


def test_body_longer_than_the_pinned_size_is_rejected(tmp_path: Path) -> None:
    # No Content-Length: only the pin bounds the body.
    with serve({PATH: DATA}, content_length=False) as srv, pytest.raises(FetchError) as err:
        download(srv.url(PATH), tmp_path / NAME, None, size=len(DATA) - 10, **FAST)
    assert "more than" in err.value.message and len(srv.requests) == 1
    assert files_under(tmp_path) == []


def test_declared_length_against_the_pinned_size(tmp_path: Path) -> None:
    with serve({PATH: DATA}) as srv, pytest.raises(FetchError) as err:
        download(srv.url(PATH), tmp_path / NAME, SHA, size=len(DATA) + 1, **FAST)
    assert f"reports {len(DATA)} bytes" in err.value.message and len(srv.requests) == 1
    assert files_under(tmp_path) == []


def test_close_delimited_body_cut_short_is_retried(tmp_path: Path) -> None:
    # No Content-Length and no validator: the size pin is what shows the body is short.
    with serve({PATH: DATA}, content_length=False, cut_after=1234, cut_times=1) as srv:
        result = download(srv.url(PATH), tmp_path / NAME, None, size=len(DATA), **FAST)
    assert len(srv.requests) == 2 and result.path.read_bytes() == DATA


def test_file_on_disk_served_by_the_fixture_resumes(tmp_path: Path, http_serve: Callable[..., TestServer]) -> None:
    iso = tmp_path / "served.iso"
    iso.write_bytes(DATA)
    srv = http_serve({"/f.iso": iso}, cut_after=700_000, cut_times=1)
    result = download(srv.url("/f.iso"), tmp_path / "out" / "f.iso", SHA, **FAST)
    assert srv.requests[1].headers["range"] == "bytes=700000-" and result.path.read_bytes() == DATA


def test_redirect_is_followed(tmp_path: Path) -> None:
    with serve({PATH: DATA}) as srv:
        srv.faults.redirects["/latest.iso"] = srv.url(PATH)
        result = download(srv.url("/latest.iso"), tmp_path / NAME, SHA, **FAST)
    assert srv.paths() == ["/latest.iso", PATH] and result.path.read_bytes() == DATA


def test_non_http_url_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="not an http"):
        download("file:///etc/passwd", tmp_path / "x", SHA, **FAST)


# --------------------------------------------------------------------------- local path and source rules


def test_path_is_used_instead_of_url(tmp_path: Path) -> None:
    iso = tmp_path / "local.iso"
    iso.write_bytes(DATA)
    with serve({PATH: DATA}) as srv:
        result = obtain_iso(iso_source(srv.url(PATH), path=iso, path_raw="local.iso", size=len(DATA)),
                            tmp_path / "cache", **FAST)
        assert srv.requests == []
    assert result == FetchResult(path=iso, sha256=SHA, size=len(DATA), origin="path", url=srv.url(PATH),
                                 expected=SHA)
    assert not (tmp_path / "cache").exists()


def test_path_without_pin_is_hashed(tmp_path: Path) -> None:
    iso = tmp_path / "local.iso"
    iso.write_bytes(DATA)
    result = obtain_iso(iso_source(None, sha256=None, path=iso), tmp_path / "cache", **FAST)
    assert result.origin == "path" and result.sha256 == SHA and result.url is None


def test_path_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    iso = tmp_path / "local.iso"
    iso.write_bytes(DATA[:-1])
    with pytest.raises(ChecksumMismatch) as err:
        obtain_iso(iso_source(None, path=iso, path_raw="isos/local.iso"), tmp_path, spec_display="specs/a.yaml",
                   **FAST)
    line = err.value.render()
    assert "isos/local.iso" in line and SHA in line and hashlib.sha256(DATA[:-1]).hexdigest() in line
    assert "update source.sha256 in specs/a.yaml" in line


def test_path_size_mismatch_fails_before_hashing(tmp_path: Path) -> None:
    iso = tmp_path / "local.iso"
    iso.write_bytes(DATA)
    with pytest.raises(FetchError, match=f"size is {len(DATA)} bytes, but source.size pins 5"):
        obtain_iso(iso_source(None, path=iso, size=5), tmp_path, **FAST)


def test_missing_path_without_url(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as err:
        obtain_iso(iso_source(None, path=tmp_path / "nope.iso", path_raw="nope.iso"), tmp_path, **FAST)
    assert "source.path nope.iso: no such file" in err.value.message
    assert "source.url" in (err.value.hint or "")


def test_missing_path_falls_back_to_url(tmp_path: Path) -> None:
    with serve({PATH: DATA}) as srv:
        result = obtain_iso(iso_source(srv.url(PATH), path=tmp_path / "nope.iso"), tmp_path, **FAST)
    assert result.origin == "download"


def test_remote_source_must_be_pinned(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="not pinned"):
        obtain_iso(iso_source("http://127.0.0.1:9/x.iso", sha256=None), tmp_path, **FAST)


# --------------------------------------------------------------------------- progress


def test_progress_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with serve({PATH: DATA}) as srv:
        monkeypatch.setenv("AERO_MEDIA_PROGRESS", "always")
        download(srv.url(PATH), tmp_path / "a" / NAME, SHA, backoff=0)
        err = capsys.readouterr().err
        assert f"download {NAME}: " in err and "MiB" in err and "\x1b[K" in err
        monkeypatch.setenv("AERO_MEDIA_PROGRESS", "never")
        download(srv.url(PATH), tmp_path / "b" / NAME, SHA, backoff=0)
        assert "\x1b[" not in capsys.readouterr().err


def test_a_slow_download_off_a_terminal_prints_a_line_every_ten_seconds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A CI log: a plain line at most every ten seconds with bytes done, total and rate, never past 100%.

    The server sends the body in 64 KiB pieces; the clock moves three seconds per look, so the
    download "takes" a minute or more without the test waiting for it.
    """
    import re

    from aero_media import log

    now = [0.0]

    def clock() -> float:
        now[0] += 3.0
        return now[0]

    monkeypatch.setattr(log, "CLOCK", clock)
    monkeypatch.delenv("AERO_MEDIA_PROGRESS", raising=False)  # stderr is captured: not a terminal
    with serve({PATH: DATA}) as srv:
        download(srv.url(PATH), tmp_path / NAME, SHA, backoff=0)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"download {NAME}: ")]
    elapsed = now[0]
    assert 2 <= len(lines) <= elapsed // log.PLAIN_INTERVAL + 1, lines
    total = f"{len(DATA) / 2**20:.1f} MiB"
    pattern = re.compile(rf"download {re.escape(NAME)}: [\d.]+ (KiB|MiB) / {total} \((\d+)%\), [\d.]+ (KiB|MiB)/s")
    assert all(pattern.match(line) for line in lines), lines
    assert all(int(pattern.match(line).group(2)) <= 100 for line in lines)  # type: ignore[union-attr]
    assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)


def test_the_background_hash_reports_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from aero_media.hashmemo import HashMemo
    from aero_media.sources import fetch

    iso = tmp_path / "v.iso"
    iso.write_bytes(DATA)
    monkeypatch.setenv("AERO_MEDIA_PROGRESS", "always")
    fetch.start_proof(iso, HashMemo(tmp_path / "build" / "memo.json"))
    fetch.settle_background_hashes()
    err = capsys.readouterr().err
    assert f"hash v.iso (background): {len(DATA) / 2**20:.1f} MiB / {len(DATA) / 2**20:.1f} MiB (100%)" in err


def test_two_fetches_of_one_entry_download_once(tmp_path: Path) -> None:
    """Checkouts share the cache: the entry lock makes the second wait, then find the first one's file."""
    import threading

    results: list[FetchResult] = []
    with serve({PATH: DATA}) as srv:
        source = iso_source(srv.url(PATH))
        threads = [threading.Thread(target=lambda: results.append(obtain_iso(source, tmp_path, **FAST)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(srv.requests) == 1
    assert sorted(r.origin for r in results) == ["cache", "cache", "download"]
    assert all(r.path.read_bytes() == DATA for r in results)


def test_a_run_that_ends_waits_for_its_background_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hash still running when a run ends is waited for: its memo write never lands in a deleted folder."""
    import threading

    from aero_media.hashmemo import HashMemo
    from aero_media.sources import fetch

    iso = tmp_path / "v.iso"
    iso.write_bytes(b"iso bytes")
    real = fetch.proven_hash
    release = threading.Event()

    def held(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int, object]:
        release.wait()
        return real(path, progress)

    monkeypatch.setattr(fetch, "proven_hash", held)
    memo = HashMemo(tmp_path / "build" / "memo.json")
    fetch.start_proof(iso, memo)
    timer = threading.Timer(0.2, release.set)  # whenever it comes, settling waits for it
    timer.start()
    fetch.settle_background_hashes()
    timer.join()
    assert memo.lookup(iso, iso.stat()) == hashlib.sha256(b"iso bytes").hexdigest()

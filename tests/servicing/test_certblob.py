"""Certificate Blobs: the serialized layout, the registry location, and Wine's crypt32 loading them.

Oracles: the byte layout against the structure (``u32 id, u32 1, u32 length,
data``); and, under Wine, crypt32 itself: a program assembled in
:mod:`tests.servicing.certcount_exe` counts the certificates of HKLM's
``TrustedPublisher`` store and finds ours by SHA-1 hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aero_media.errors import SourceError
from aero_media.servicing import certblob, hive
from aero_media.servicing.certblob import Store
from aero_media.servicing.edits import HiveFile, ImageKind, Options, registry_edits
from aero_media.servicing.hive import RegType, SetValue
from aero_media.spec.contract import Contract
from aero_media.win7.certs import Cert
from tests.lib import win7image
from tests.lib.needs import need, need_tool
from tests.servicing import certcount_exe

FOUND = 100  # certcount_exe adds this when the hash lookup finds the certificate


def test_blob_is_the_sha1_entry_then_the_certificate_entry(cert: Cert) -> None:
    blob = certblob.serialized_cert(cert.der)
    sha1 = hashlib.sha1(cert.der).digest()
    assert blob[:12] == struct.pack("<III", 3, 1, 20) and blob[12:32] == sha1
    assert blob[32:44] == struct.pack("<III", 0x20, 1, len(cert.der)) and blob[44:] == cert.der
    assert certblob.parse_serialized(blob) == [certblob.Property(3, sha1), certblob.Property(0x20, cert.der)]


def test_parser_refuses_what_is_not_the_layout(cert: Cert) -> None:
    blob = certblob.serialized_cert(cert.der)
    with pytest.raises(ValueError, match="runs past the end"):
        certblob.parse_serialized(blob[:-1])
    with pytest.raises(ValueError, match="reserved field is 0"):
        certblob.parse_serialized(struct.pack("<III", 0x20, 0, 0))
    with pytest.raises(ValueError, match="stray bytes"):
        certblob.parse_serialized(blob + b"\0\0")
    with pytest.raises(SourceError, match="not DER"):
        certblob.serialized_cert(b"-----BEGIN CERTIFICATE-----")


def _store_edit(store: Store, cert: Cert, contract: Contract) -> SetValue:
    """The edit the servicing table gives an install image's SOFTWARE hive for ``cert`` in ``store``."""
    found = registry_edits(ImageKind.INSTALL, HiveFile.SOFTWARE, contract,
                           Options(certificates=(cert,), stores=(store,)))
    [edit] = [e for e in found if "\\Certificates\\" in e.key]
    assert isinstance(edit, SetValue)
    return edit


def test_registry_location_is_the_store_and_the_upper_case_thumbprint(cert: Cert, contract: Contract) -> None:
    edit = _store_edit(Store.TRUSTED_PUBLISHER, cert, contract)
    upper = hashlib.sha1(cert.der).hexdigest().upper()
    assert edit.key == f"Microsoft\\SystemCertificates\\TrustedPublisher\\Certificates\\{upper}"
    assert _store_edit(Store.ROOT, cert, contract).key.split("\\")[2] == "ROOT"
    assert (edit.value.name, edit.value.type) == ("Blob", RegType.BINARY)


def test_the_blob_survives_an_offline_hive(cert: Cert, contract: Contract, tmp_path: Path) -> None:
    need_tool("hivexregedit", "to edit the test hive")
    software = win7image.software_hive(tmp_path / "SOFTWARE")
    edit = _store_edit(Store.ROOT, cert, contract)
    hive.apply(software, [edit])
    stored = hive.read_value(software, edit.key, "blob")
    assert stored is not None and stored.data == certblob.serialized_cert(cert.der)


# -- Wine's crypt32 ---------------------------------------------------------------

class _Wine:
    """A throwaway 64-bit Wine prefix (booting one takes several seconds)."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all", "WINEARCH": "win64",
                    "WINEDLLOVERRIDES": "mscoree,mshtml="}
        self.env.pop("DISPLAY", None)

    def run(self, *args: str) -> int:
        # No pipes: Wine's background services inherit them and would keep a capture open forever.
        return subprocess.run(["wine", *args], env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=120, check=False).returncode

    def import_reg(self, text: str, name: str) -> None:
        path = self.prefix / name
        path.write_text(text, encoding="ascii", newline="\r\n")
        assert self.run("reg", "import", str(path)) == 0


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Wine]:
    need_tool("wine", "to load the certificate store with Wine's crypt32")
    if shutil.which("wineserver") is None:
        need("wine", "wineserver is not on PATH")
    w = _Wine(tmp_path_factory.mktemp("wine") / "prefix")
    w.prefix.mkdir()
    # A persistent wineserver: without it each wine call starts (and boots) a new one.
    subprocess.run(["wineserver", "-p"], env=w.env, check=False, timeout=60, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if w.run("cmd", "/c", "echo", "ready") != 0:
        need("wine", "wine could not boot a 64-bit prefix here")
    yield w
    subprocess.run(["wineserver", "-k"], env=w.env, check=False, timeout=60, capture_output=True)


_STORE = "HKEY_LOCAL_MACHINE\\Software\\Microsoft\\SystemCertificates\\TrustedPublisher\\Certificates"
_HEADER = "Windows Registry Editor Version 5.00\n\n"


def _reg(key_name: str, blob: bytes) -> str:
    data = ",".join(f"{b:02x}" for b in blob)
    return f"{_HEADER}[-{_STORE}\\{key_name}]\n\n[{_STORE}\\{key_name}]\n\"Blob\"=hex:{data}\n"


def _count(wine: _Wine, cert: Cert, key_name: str, blob: bytes) -> int:
    exe = wine.prefix / "certcount.exe"
    exe.write_bytes(certcount_exe.build(hashlib.sha1(cert.der).digest()))
    wine.import_reg(_reg(key_name, blob), "store.reg")
    try:
        return wine.run(str(exe))
    finally:
        wine.import_reg(f"{_HEADER}[-{_STORE}\\{key_name}]\n", "clear.reg")


@pytest.mark.wine
def test_wine_crypt32_loads_our_blob_and_finds_it_by_hash(wine: _Wine, cert: Cert, contract: Contract,
                                                         tmp_path: Path) -> None:
    need_tool("hivexregedit", "to edit the test hive")
    software = win7image.software_hive(tmp_path / "SOFTWARE")
    edit = _store_edit(Store.TRUSTED_PUBLISHER, cert, contract)
    hive.apply(software, [edit])
    stored = hive.read_value(software, edit.key, "Blob")  # the bytes as they are in the offline hive
    assert stored is not None and isinstance(stored.data, bytes)
    assert _count(wine, cert, edit.key.rsplit("\\", 1)[1], stored.data) == 1 + FOUND


@pytest.mark.wine
def test_wine_crypt32_loads_nothing_from_raw_der_or_a_lower_case_key(wine: _Wine, cert: Cert) -> None:
    # The negative controls: the program and the store work, these Blobs/keys do not.
    assert _count(wine, cert, cert.thumbprint, cert.der) == 0
    assert _count(wine, cert, cert.thumbprint.lower(), certblob.serialized_cert(cert.der)) == 0
    # The certificate entry alone loads too (docs/windows7.md#certificate-blobs); we add the hash
    # entry on top.
    assert _count(wine, cert, cert.thumbprint, certblob.serialized_cert(cert.der)[32:]) == 1 + FOUND

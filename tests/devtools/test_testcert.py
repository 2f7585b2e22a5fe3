"""The test-signing certificate: what Windows 7 test mode needs, files osslsigncode reads, validity rules."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from aero_media.devtools import testcert
from aero_media.devtools.testcert import CODE_SIGNING_EKU, make_test_cert, validity
from aero_media.errors import SourceError, UsageError
from aero_media.win7.certs import PEM_KEY_MARKER, load_cert_file

EPOCH_1980 = 315532800


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> testcert.TestCert:
    return make_test_cert(tmp_path_factory.mktemp("tc"), "t", "Aero test root", not_before=EPOCH_1980)


def _cert(tc: testcert.TestCert) -> x509.Certificate:
    return x509.Certificate.load(tc.cer.read_bytes())


def test_certificate_is_what_windows_7_test_signing_needs(made):
    cert = _cert(made)
    assert cert.subject == cert.issuer and cert.subject.native == {"common_name": "Aero test root"}
    assert cert.public_key.algorithm == "rsa" and cert.public_key.bit_size == 2048
    # sha1WithRSA: no KB3033929 needed for the certificate's own signature.
    assert cert["signature_algorithm"]["algorithm"].native == "sha1_rsa"
    assert cert.extended_key_usage_value.native == ["code_signing"]
    assert cert.extended_key_usage_value[0].dotted == CODE_SIGNING_EKU
    assert cert.key_usage_value.native == {"digital_signature"}
    assert cert.basic_constraints_value.native == {"ca": False, "path_len_constraint": None}
    critical = {e["extn_id"].native: e["critical"].native for e in cert["tbs_certificate"]["extensions"]}
    assert critical == {"basic_constraints": True, "key_usage": True, "extended_key_usage": False,
                        "key_identifier": False}
    assert cert.key_identifier == hashlib.sha1(cert.public_key["public_key"].contents[1:]).digest()
    assert made.thumbprint == hashlib.sha1(made.cer.read_bytes()).hexdigest().upper()  # as Windows prints it


def test_certificate_signature_verifies_with_its_own_key(made):
    cert = _cert(made)
    key = serialization.load_pem_private_key(made.key_pem.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    key.public_key().verify(cert["signature_value"].native, cert["tbs_certificate"].dump(), padding.PKCS1v15(),
                            hashes.SHA1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki == cert.public_key.dump()


def test_files_for_osslsigncode_signtool_and_the_media(made):
    assert ssl.PEM_cert_to_DER_cert(made.cert_pem.read_text()) == made.cer.read_bytes()
    assert made.key_pem.read_bytes().startswith(f"-----BEGIN {PEM_KEY_MARKER}-----".encode())
    for private in (made.key_pem, made.pfx):
        assert private.stat().st_mode & 0o077 == 0
    key, cert, extra = pkcs12.load_key_and_certificates(made.pfx.read_bytes(), None)
    assert cert is not None and cert.public_bytes(serialization.Encoding.DER) == made.cer.read_bytes()
    assert key is not None and extra == []
    # The media take the .cer and the PEM certificate, never the key.
    assert load_cert_file(made.cer, "t.cer").thumbprint == made.thumbprint
    assert load_cert_file(made.cert_pem, "t.cert.pem").thumbprint == made.thumbprint
    # The media file name carries the thumbprint's start in lower case, as shipped media always have.
    assert load_cert_file(made.cer, "t.cer").name == f"{made.cer.stem}-{made.thumbprint[:8].lower()}.cer"
    with pytest.raises(SourceError, match="holds a PEM private key"):
        load_cert_file(made.key_pem, "t.key.pem")


def test_validity_starts_at_the_epoch_and_lasts_from_today(made):
    tbs = _cert(made)["tbs_certificate"]["validity"]
    assert tbs["not_before"].native == dt.datetime(1980, 1, 1, tzinfo=dt.UTC)
    days_left = (tbs["not_after"].native - dt.datetime.now(dt.UTC)).days
    assert 3648 <= days_left <= 3650


def test_validity_rules():
    now = dt.datetime(2026, 6, 1, 12, 30, 15, 999, tzinfo=dt.UTC)
    assert validity(10, now=now) == (dt.datetime(2026, 5, 31, 12, 30, 15, tzinfo=dt.UTC),
                                     dt.datetime(2026, 6, 11, 12, 30, 15, tzinfo=dt.UTC))
    start, end = validity(10, EPOCH_1980, now=now)
    assert start == dt.datetime(1980, 1, 1, tzinfo=dt.UTC) and end == dt.datetime(2026, 6, 11, 12, 30, 15,
                                                                                   tzinfo=dt.UTC)
    future = dt.datetime(2030, 1, 1)  # naive datetimes are UTC
    assert validity(1, future, now=now) == (future.replace(tzinfo=dt.UTC), dt.datetime(2030, 1, 2, tzinfo=dt.UTC))
    with pytest.raises(UsageError, match="must be from 1 to 36500"):
        validity(0)


def test_sha256_certificate_on_request_and_generalized_time_after_2049(tmp_path):
    tc = make_test_cert(tmp_path, cert_hash="sha256", days=40 * 365)
    cert = _cert(tc)
    assert cert["signature_algorithm"]["algorithm"].native == "sha256_rsa"
    assert cert["tbs_certificate"]["validity"]["not_after"].name == "general_time"
    assert cert["tbs_certificate"]["validity"]["not_before"].name == "utc_time"


def test_never_overwrites_any_of_its_files(tmp_path: Path):
    (tmp_path / "x.cert.pem").write_text("old")
    with pytest.raises(UsageError, match=r"x\.cert\.pem already exists"):
        make_test_cert(tmp_path, "x")
    assert (tmp_path / "x.cert.pem").read_text() == "old" and not (tmp_path / "x.key.pem").exists()

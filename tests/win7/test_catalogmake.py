"""Catalog creation: the Windows 7 shape, read back by our reader, compared with Inf2Cat's bytes, reproducible."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import cms, core

from aero_media.devtools.pestub import build_pe
from aero_media.spec.types import Arch
from aero_media.win7.catalog import CertificateTrustList, parse_catalog
from aero_media.win7.catalogmake import (
    FLAT_SUBJECT_GUID,
    PE_SUBJECT_GUID,
    CatalogMemberFile,
    MemberKind,
    catalog_entries,
    make_catalog,
)
from aero_media.win7.pe import MACHINE_AMD64, MACHINE_I386, SUBSYSTEM_WINDOWS_GUI, PeError, authenticode_hash
from tests.lib.trees import inf_for

EPOCH = 315532800  # 1980-01-01, the default SOURCE_DATE_EPOCH
INF = inf_for("viostor", "amd64")
SYS = build_pe(MACHINE_AMD64, marker=b"test driver viostor") + b"\x01\x02\x03"  # odd size: padded hash
DLL = build_pe(MACHINE_AMD64, SUBSYSTEM_WINDOWS_GUI, dll=True, marker=b"co-installer")


def members(tmp_path: Path | None = None) -> list[CatalogMemberFile]:
    sys_source: bytes | Path = SYS
    if tmp_path is not None:
        sys_source = tmp_path / "viostor.sys"
        sys_source.write_bytes(SYS)
    return [CatalogMemberFile("viostor.inf", INF), CatalogMemberFile("viostor.sys", sys_source),
            CatalogMemberFile("WdfCoInstaller01009.dll", DLL), CatalogMemberFile("README.txt", b"notes\r\n")]


def ctl_of(data: bytes) -> CertificateTrustList:
    """The trust list inside a .cat, read with asn1crypto's generic classes plus the reader's CTL shape."""
    info = cms.ContentInfo.load(data)
    return info["content"]["encap_content_info"]["content"].parse(CertificateTrustList)


def test_reader_gets_back_exactly_the_members_and_attributes_written(tmp_path):
    data = make_catalog(members(tmp_path), Arch.AMD64, this_update=EPOCH)
    cat = parse_catalog(data, "viostor.cat")
    assert not cat.signed and not cat.placeholder
    assert cat.subject_algorithm == "sha1" and cat.member_algorithms == ("sha1",)
    assert cat.this_update == datetime(1980, 1, 1, tzinfo=UTC)
    assert cat.attributes == (("OS", "7X64"), ("OSAttr", "2:6.1"))
    want = {
        "viostor.inf": (hashlib.sha1(INF).digest(), "flat", FLAT_SUBJECT_GUID),
        "viostor.sys": (authenticode_hash(SYS), "pe", PE_SUBJECT_GUID),
        "WdfCoInstaller01009.dll": (authenticode_hash(DLL), "pe", PE_SUBJECT_GUID),
        "README.txt": (hashlib.sha1(b"notes\r\n").digest(), "flat", FLAT_SUBJECT_GUID),
    }
    got = {m.file: (m.digest, m.kind, m.subject_guid) for m in cat.members}
    assert got == want
    for m in cat.members:
        assert m.tag == m.digest.hex().upper() and m.digest_algorithm == "sha1"
        assert sorted(m.attributes) == [("File", m.file), ("OSAttr", "2:6.1")]
        assert cat.find(m.digest) is m
    # Sorted by hash, like Inf2Cat; the entries helper says the same order.
    assert [m.tag for m in cat.members] == sorted(m.tag for m in cat.members)
    assert [e.tag for e in catalog_entries(members())] == [m.tag for m in cat.members]


def test_the_trust_list_is_a_version_1_catalog_list():
    ctl = ctl_of(make_catalog(members(), Arch.X86, this_update=EPOCH))
    # CTL_V1 is the DEFAULT version (0), so it is not encoded: the trust list starts with SubjectUsage.
    assert ctl["version"].native == 0 and ctl.contents[:2] == b"\x30\x0c"
    assert [o.dotted for o in ctl["subject_usage"]] == ["1.3.6.1.4.1.311.12.1.1"]
    assert len(ctl["list_identifier"].native) == 16
    assert ctl["this_update"].name == "utc_time"
    assert ctl["subject_algorithm"]["algorithm"].dotted == "1.3.6.1.4.1.311.12.1.2"
    assert ctl["subject_algorithm"]["parameters"].dump() == b"\x05\x00"
    info = cms.ContentInfo.load(make_catalog(members(), Arch.X86, this_update=EPOCH))
    sd = info["content"]
    assert sd["version"].native == "v1" and len(sd["digest_algorithms"]) == 0 and len(sd["signer_infos"]) == 0
    assert parse_catalog(info.dump()).os_attr == "7X86"


def test_member_tags_are_utf16_hex_with_a_nul_and_attribute_sets_are_der_sorted():
    ctl = ctl_of(make_catalog(members(), Arch.AMD64, this_update=EPOCH))
    for subject in ctl["trusted_subjects"]:
        raw = subject["identifier"].native
        assert raw.endswith(b"\0\0") and raw.decode("utf-16-le")[:-1] == raw.decode("utf-16-le")[:-1].upper()
        encodings = [a.dump() for a in subject["attributes"]]
        assert encodings == sorted(encodings) and len(encodings) == 4
    # Re-encoding the whole catalog strictly gives the same bytes: it is DER.
    data = make_catalog(members(), Arch.AMD64, this_update=EPOCH)
    assert core.load(data, strict=True).dump(force=True) == data


def _subjects(data: bytes) -> dict[str, bytes]:
    """Member DER by File name."""
    out = {}
    for subject in ctl_of(data)["trusted_subjects"]:
        for attr in subject["attributes"]:
            for value in attr["values"]:
                raw = value.dump()
                for name in ("viostor.inf", "viostor.sys"):
                    if name.encode("utf-16-le") in raw:
                        out[name] = subject.dump()
    return out


def test_members_are_byte_identical_to_inf2cats(realdata):
    """Oracle: the real upstream viostor catalog, made by Inf2Cat and signed by Red Hat."""
    real_cat = (realdata / "cat" / "viostor" / "amd64" / "viostor.win7.build17300.cat").read_bytes()
    real_inf = (realdata / "inf" / "viostor" / "amd64" / "viostor.win7.61.80.104.17300.inf").read_bytes()
    real = _subjects(real_cat)
    ours = _subjects(make_catalog([CatalogMemberFile("viostor.inf", real_inf),
                                   CatalogMemberFile("viostor.sys", SYS)], Arch.AMD64, this_update=EPOCH))
    assert ours["viostor.inf"] == real["viostor.inf"]
    # The .sys differs (a stand-in), so its hash does; put the real hash in and everything else must match.
    our_tag = authenticode_hash(SYS).hex().upper()
    real_tag = parse_catalog(real_cat).members[0].tag
    swapped = ours["viostor.sys"].replace(our_tag.encode("utf-16-le"), real_tag.encode("utf-16-le"))
    swapped = swapped.replace(authenticode_hash(SYS), bytes.fromhex(real_tag))
    assert swapped == real["viostor.sys"]


def test_identical_inputs_give_identical_bytes_in_any_order(tmp_path):
    a = make_catalog(members(tmp_path), Arch.AMD64, this_update=EPOCH)
    b = make_catalog(list(reversed(members())), Arch.AMD64, this_update=EPOCH)
    assert a == b
    later = make_catalog(members(), Arch.AMD64, this_update=EPOCH + 1)
    assert later != a and ctl_of(later)["list_identifier"].native != ctl_of(a)["list_identifier"].native
    fixed = make_catalog(members(), Arch.AMD64, this_update=EPOCH, list_id=bytes(range(16)))
    assert ctl_of(fixed)["list_identifier"].native == bytes(range(16))


def test_kinds_by_extension_or_as_told():
    assert MemberKind.for_name("A.SYS") is MemberKind.PE and MemberKind.for_name("x.Exe") is MemberKind.PE
    assert MemberKind.for_name("x.inf") is MemberKind.FLAT and MemberKind.for_name("sys") is MemberKind.FLAT
    cat = parse_catalog(make_catalog([CatalogMemberFile("image.bin", SYS, MemberKind.PE),
                                      CatalogMemberFile("blob.sys", SYS, MemberKind.FLAT)],
                                     Arch.AMD64, this_update=EPOCH))
    assert cat.find(authenticode_hash(SYS)).file == "image.bin"
    assert cat.find(hashlib.sha1(SYS).digest()).file == "blob.sys"


def test_other_os_lists_and_times_after_2049():
    when = int(datetime(2051, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp())
    data = make_catalog(members(), Arch.AMD64, this_update=when, os_list="7X64,Server2008R2X64")
    assert ctl_of(data)["this_update"].name == "general_time"
    cat = parse_catalog(data)
    assert cat.this_update == datetime(2051, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert cat.os_attr == "7X64,Server2008R2X64"


@pytest.mark.parametrize("kwargs, needle", [
    ({"members": []}, "at least one member"),
    ({"members": [CatalogMemberFile("a.inf", b"x"), CatalogMemberFile("A.INF", b"y")]}, "listed twice"),
    ({"members": [CatalogMemberFile("amd64/a.inf", b"x")]}, "not a plain file name"),
    ({"list_id": b"short"}, "16 bytes"),
    ({"os_attr": "6.1"}, "not like '2:6.1'"),
    ({"os_list": "7X64;8X64"}, "not like '7X64'"),
    ({"this_update": -1}, "before 1970"),
])
def test_bad_arguments_are_value_errors(kwargs, needle):
    args = {"members": members(), "this_update": EPOCH, **kwargs}
    with pytest.raises(ValueError, match=needle):
        make_catalog(args.pop("members"), Arch.AMD64, **args)


def test_a_pe_member_that_is_not_a_pe_image_names_the_file():
    with pytest.raises(PeError) as exc:
        make_catalog([CatalogMemberFile("broken.sys", b"MZ but nothing else")], Arch.X86, this_update=EPOCH)
    assert exc.value.message.startswith("broken.sys: ") and "cannot be listed in a catalog" in exc.value.message
    assert "\n" not in exc.value.render()
    x86 = build_pe(MACHINE_I386)
    assert parse_catalog(make_catalog([CatalogMemberFile("ok.sys", x86)], Arch.X86, this_update=EPOCH)).members


def test_inf_members_are_the_files_inf2cat_listed(realdata):
    """Oracle: real Inf2Cat catalogs list the INF and what it copies, for each arch."""
    from aero_media.win7.catalogmake import inf_catalog_files
    from aero_media.win7.inf import parse_inf

    for arch, folder in ((Arch.AMD64, "amd64"), (Arch.X86, "x86")):
        for build in ("17300", "17600"):
            cat = parse_catalog((realdata / "cat" / "viostor" / folder / f"viostor.win7.build{build}.cat").read_bytes())
            [inf_path] = (realdata / "inf" / "viostor" / folder).glob(f"viostor.win7.*.{build}.inf")
            listed = inf_catalog_files(parse_inf(inf_path.read_bytes(), "viostor.inf"), arch)
            assert {"viostor.inf", *listed} == {str(m.file).lower() for m in cat.members}, (arch, build)


ARCH_INF = b"""\
[Version]
Signature="$Windows NT$"
Class=System
ClassGUID={4D36E97D-E325-11CE-BFC1-08002BE10318}
CatalogFile=demo.cat

[SourceDisksNames]
1 = "Disk",,,""
2 = "Tools",,,"tools"

[SourceDisksFiles]
demo.sys = 1,,
[SourceDisksFiles.amd64]
demo_x64.dll = 1,,
helper.exe = 2,bin,

[DestinationDirs]
DefaultDestDir = 12

[Manufacturer]
"Demo" = Demo,NTx86,NTamd64

[Demo.NTx86]
"Demo device" = demo_inst, PCI\\VEN_1AF4&DEV_1099

[Demo.NTamd64]
"Demo device" = demo_inst, PCI\\VEN_1AF4&DEV_1099

[demo_inst.NTx86]
CopyFiles = demo_files

[demo_inst.NTamd64]
CopyFiles = demo_files, @demo_x64.dll

[demo_inst.NTamd64.CoInstallers]
CopyFiles = co_files

[demo_files]
demo.sys
[co_files]
democo.dll

[readme_files]
README.txt
"""


def test_inf_members_follow_the_arch_sections_coinstallers_and_source_disks():
    """Only what Windows 7 on that arch copies (and every SourceDisksFiles entry for it), not every section."""
    from aero_media.win7.catalogmake import inf_catalog_files
    from aero_media.win7.inf import parse_inf

    inf = parse_inf(ARCH_INF.replace(b"\n", b"\r\n"), "demo.inf")
    assert inf_catalog_files(inf, Arch.X86) == ("demo.sys",)
    assert inf_catalog_files(inf, Arch.AMD64) == ("demo.sys", "demo_x64.dll", "democo.dll", "tools/bin/helper.exe")

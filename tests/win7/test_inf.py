"""INF parser: syntax rules, encodings, decoration choice, and every real upstream Win7 INF."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aero_media.win7.inf import parse_decoration, parse_inf


def inf(text: str, name: str = "t.inf"):
    return parse_inf(text.replace("\n", "\r\n").encode("cp1252"), name)


# --- syntax --------------------------------------------------------------------------------


def test_sections_are_case_insensitive_and_repeated_sections_merge_in_order():
    parsed = inf("[Foo]\na = 1\n[Bar]\nx = 0\n[FOO]\nb = 2\n")
    assert [(ln.key, ln.values) for ln in parsed.section("foo")] == [("a", ("1",)), ("b", ("2",))]
    assert parsed.section_title("fOO") == "Foo"
    assert [ln.lineno for ln in parsed.section("Foo")] == [2, 6]


def test_duplicate_keys_are_kept_in_order_and_lines_without_equals_are_values():
    parsed = inf('[S]\nAddReg = one\nAddReg = two\nHKR, "Interrupt Management",, 0x00000010\n')
    assert [ln.value for ln in parsed.get_all("s", "addreg")] == ["one", "two"]
    plain = parsed.section("S")[2]
    assert plain.key is None
    assert plain.values == ("HKR", "Interrupt Management", "", "0x00000010")


def test_comments_only_outside_quotes_and_quoted_commas_stay_in_one_field():
    parsed = inf('[S]\nv = "a;b", "c,d"  ; trailing comment\n; whole-line comment\nw = 1;x\n')
    assert parsed.get("S", "v").values == ("a;b", "c,d")
    assert parsed.get("S", "w").values == ("1",)
    assert len(parsed.section("S")) == 2


def test_doubled_quotes_inside_quotes_are_a_literal_quote():
    parsed = inf('[S]\nv = "say ""hi"" now", "  kept  "\n')
    assert parsed.get("S", "v").values == ('say "hi" now', "  kept  ")


def test_trailing_backslash_continues_the_line_and_keeps_line_numbers():
    parsed = inf("[S]\nCopyFiles = first, \\\n            second, \\\n  third\nnext = 1\n")
    line = parsed.get("S", "CopyFiles")
    assert line.values == ("first", "second", "third")
    assert line.lineno == 2
    assert parsed.get("S", "next").lineno == 5
    assert parsed.problems == ()


def test_strings_resolve_case_insensitively_with_0409_override_and_percent_escapes():
    parsed = inf(
        "[Version]\nProvider = %Vendor%\n"
        '[S]\nDesc = %DEV.desc%\nPath = "%%SystemRoot%%\\System32\\x.dll"\nBin = %12%\\x.sys\n'
        "Mixed = pre-%vendor%-post\n"
        '[Strings]\nvendor = "Red Hat, Inc."\ndev.DESC = "plain"\n'
        '[Strings.0409]\nDev.Desc = "US English"\n'
    )
    assert parsed.version_value("provider").value == "Red Hat, Inc."
    assert parsed.get("S", "Desc").value == "US English"
    assert parsed.get("S", "Path").value == "%SystemRoot%\\System32\\x.dll"
    assert parsed.get("S", "Bin").value == "%12%\\x.sys"  # a DIRID, resolved by Windows at install time
    assert parsed.get("S", "Mixed").value == "pre-Red Hat, Inc.-post"
    assert parsed.problems == ()


def test_undefined_string_key_is_a_problem_with_its_line_not_a_crash():
    parsed = inf("[Version]\nSignature = \"$Windows NT$\"\n\n[S]\nDesc = %Missing.Desc%\n[Strings]\nA = \"a\"\n")
    assert parsed.get("S", "Desc").value == "%Missing.Desc%"
    (problem,) = parsed.problems
    assert (problem.code, problem.severity, problem.line) == ("inf-undefined-string", "warning", 5)
    assert problem.line == 5 and "%Missing.Desc%" in problem.message
    assert "[Strings]" in problem.fix


def test_utf16le_with_bom_parses_like_ansi_and_keeps_non_ascii_text():
    text = '[Version]\r\nSignature="$Windows NT$"\r\n[Strings]\r\nName = "Café Ω"\r\n[S]\r\nv = %Name%\r\n'
    parsed = parse_inf(b"\xff\xfe" + text.encode("utf-16-le"), "u.inf")
    assert parsed.encoding == "utf-16-le"
    assert parsed.get("S", "v").value == "Café Ω"
    assert parsed.get("S", "v").lineno == 6
    assert parsed.problems == ()


def test_cp1252_bytes_decode_as_windows_ansi():
    parsed = parse_inf(b'[Strings]\r\nn = "Caf\xe9 \x80"\r\n[S]\r\nv=%n%\r\n', "a.inf")
    assert parsed.get("S", "v").value == "Café €"
    assert parsed.encoding == "cp1252"


@pytest.mark.parametrize("data, code, needle", [
    ("[Version]\r\n".encode("utf-16-le"), "inf-encoding", "UTF-16LE without a byte-order mark"),
    (bytes(range(256)) * 4, "inf-encoding", "contains NUL bytes"),
    (b"\xfe\xff\x00[\x00V", "inf-encoding", "big-endian"),
    (b"just some words\r\nno sections here\r\n", "inf-no-sections", "has no [sections]"),
])
def test_garbage_input_becomes_error_problems(data, code, needle):
    parsed = parse_inf(data, "junk.inf")
    codes = {p.code: p for p in parsed.problems}
    assert code in codes
    assert codes[code].severity == "error"
    assert needle in codes[code].message
    assert parsed.section("Version") == () or code == "inf-encoding"


def test_malformed_section_header_and_unterminated_quote_are_reported_with_lines():
    parsed = inf('[Version\nSignature="$Windows NT$"\n[S]\nv = "open\n')
    found = {(p.code, p.line) for p in parsed.problems}
    assert ("inf-bad-section", 1) in found
    assert ("inf-unterminated-quote", 4) in found


def test_utf8_bom_is_a_warning():
    parsed = parse_inf(b"\xef\xbb\xbf[Version]\r\nSignature=\"$Windows NT$\"\r\n", "b.inf")
    assert [(p.code, p.severity) for p in parsed.problems] == [("inf-encoding", "warning")]
    assert parsed.version_value("Signature").value == "$Windows NT$"


# --- decorations and models ----------------------------------------------------------------


@pytest.mark.parametrize("text, arch, version, ptype, valid", [
    ("NTamd64.6.1", "amd64", (6, 1), None, True),
    ("ntx86", "x86", None, None, True),
    ("NT", None, None, None, True),
    ("NT.6.1", None, (6, 1), None, True),
    ("NTarm64.10.0...22000", "arm64", (10, 0), None, True),
    ("NTamd64.6.1.0x3", "amd64", (6, 1), 3, True),
    ("NTamd64.six", None, None, None, False),
    ("Win7", None, None, None, False),
])
def test_parse_decoration(text, arch, version, ptype, valid):
    dec = parse_decoration(text)
    assert (dec.arch, dec.version, dec.product_type, dec.valid) == (arch, version, ptype, valid)


def models_inf(decorations: str, sections: list[str]) -> str:
    body = "".join(f"[{s}]\n%D% = inst, PCI\\VEN_1AF4&DEV_1042\n" for s in sections)
    return f"[Manufacturer]\n%V% = M{decorations}\n{body}[Strings]\nV = \"v\"\nD = \"d\"\n"


def test_highest_applicable_version_wins_and_newer_ones_are_ignored():
    parsed = inf(models_inf(",NTamd64,NTamd64.6.0,NTamd64.6.1,NTamd64.6.2,NTx86.6.1",
                            ["M.NTamd64", "M.NTamd64.6.0", "M.NTamd64.6.1", "M.NTamd64.6.2", "M.NTx86.6.1"]))
    assert [c.section for c in parsed.models("amd64").chosen] == ["M.NTamd64.6.1"]
    assert [c.section for c in parsed.models("x86").chosen] == ["M.NTx86.6.1"]


def test_arch_specific_beats_archless_at_the_same_version_and_server_product_type_is_ignored():
    parsed = inf(models_inf(",NT.6.1,NTamd64.6.1,NTamd64.6.1.0x3", ["M.NT.6.1", "M.NTamd64.6.1"]))
    assert [c.section for c in parsed.models("amd64").chosen] == ["M.NTamd64.6.1"]
    assert [c.section for c in parsed.models("x86").chosen] == ["M.NT.6.1"]


def test_undecorated_models_are_the_last_resort_on_x86_only():
    parsed = inf(models_inf(",NTamd64.10.0", ["M", "M.NTamd64.10.0"]))
    assert [c.section for c in parsed.models("x86").chosen] == ["M"]
    sel = parsed.models("amd64")
    assert sel.chosen == ()
    assert sel.reason == "the INF only has NTamd64.10.0 models: this is a Windows 10 driver (wrong OS folder?)"
    plain = inf(models_inf("", ["M"]))
    assert plain.models("amd64").reason.startswith("the INF only has undecorated models ([M]), which 64-bit Windows")


def test_no_models_reason_names_the_wrong_arch_or_os():
    wrong_arch = inf(models_inf(",NTx86.6.1", ["M.NTx86.6.1"]), "viostor.inf").models("amd64")
    assert wrong_arch.reason == "the INF only has NTx86.6.1 models: this is an x86 driver (wrong arch folder?)"
    win8 = inf(models_inf(",NTamd64.6.2,NTamd64.6.3", ["M.NTamd64.6.2"]), "v.inf").models("amd64")
    assert win8.reason == ("the INF only has NTamd64.6.2, NTamd64.6.3 models: "
                           "this is a Windows 8 driver (wrong OS folder?)")
    none = inf("[Version]\nSignature=\"$Windows NT$\"\n").models("x86")
    assert none.reason == "the INF has no [Manufacturer] section: it is not a device driver INF"


def test_install_sections_prefer_arch_then_nt_then_plain_and_catalogfile_decorations():
    parsed = inf("[Version]\nCatalogFile = plain.cat\nCatalogFile.NTamd64 = x64.cat\n"
                 "[inst]\n[inst.NT]\n[inst.NTamd64]\n[other]\n")
    assert parsed.install_section("inst", "amd64") == "inst.NTamd64"
    assert parsed.install_section("inst", "x86") == "inst.NT"
    assert parsed.install_section("other", "x86") == "other"
    assert parsed.install_section("missing", "x86") is None
    assert parsed.catalog_file("amd64").value == "x64.cat"
    assert parsed.catalog_file("x86").value == "plain.cat"


def test_copyfiles_addservice_and_coinstallers():
    parsed = inf(
        "[Dev.NT]\nCopyFiles = Files_A, @direct.sys\nCopyFiles = Missing_Section\n"
        "[Files_A]\nrenamed.sys, source.sys,,2\nplain.sys\n"
        "[Dev.NT.Services]\nAddService = Svc, 0x00000002, Svc_Inst\nAddService = Helper,, Helper_Inst\n"
        "[Svc_Inst]\nStartType = %BOOT% ; boot\nServiceBinary = %12%\\svc.sys\n"
        "[Dev.NT.CoInstallers]\nAddReg = Co_AddReg\nCopyFiles = Co_Files\n"
        '[Co_AddReg]\nHKR,,CoInstallers32,0x00010000, "WdfCoInstaller01009.dll,WdfCoInstaller", "second.dll"\n'
        "[Co_Files]\nWdfCoInstaller01009.dll\n"
        "[Strings]\nBOOT = 0\n"
    )
    files, missing = parsed.copy_files("Dev.NT")
    assert [(f.name, f.section) for f in files] == [("source.sys", "Files_A"), ("plain.sys", "Files_A"),
                                                    ("direct.sys", "Dev.NT")]
    assert [m.value for m in missing] == ["Missing_Section"]
    svcs = parsed.add_services("Dev.NT")
    assert [(s.name, s.flags, s.is_function_driver) for s in svcs] == [("Svc", 2, True), ("Helper", 0, False)]
    si = parsed.service_install("Svc_Inst")
    assert (si.start_type, si.binary, si.binary_path) == (0, "svc.sys", "%12%\\svc.sys")
    assert parsed.service_install("Helper_Inst").exists is False
    co, co_files = parsed.coinstallers("Dev.NT")
    assert [(c.dll, c.entry) for c in co] == [("WdfCoInstaller01009.dll", "WdfCoInstaller"), ("second.dll", None)]
    assert [f.name for f in co_files] == ["WdfCoInstaller01009.dll"]


def test_source_disks_files_arch_section_overrides_and_paths():
    parsed = inf('[SourceDisksNames]\n1 = "d",,,""\n2 = "d2",,,\\sub\n'
                 "[SourceDisksFiles]\na.sys = 1,,\nb.sys = 2,deeper\nc.sys = 9\n"
                 "[SourceDisksFiles.amd64]\na.sys = 2\n")
    x86 = parsed.source_disks_files("x86")
    amd = parsed.source_disks_files("amd64")
    assert x86["a.sys"].relpath == "a.sys"
    assert amd["a.sys"].relpath == "sub/a.sys"
    assert x86["b.sys"].relpath == "sub/deeper/b.sys"
    assert x86["c.sys"].disk_known is False


# --- every real upstream INF ----------------------------------------------------------------

EXPECT = {
    # driver: (models base, bare DEV id, class, function service, start type, files)
    "viostor": ("VioStor", "1042", "SCSIAdapter", "viostor", 0, {"viostor.sys"}),
    "netkvm": ("NetKVM", "1041", "Net", "netkvm", 3, {"netkvm.sys"}),
    "vioinput": ("VirtioInput", "1052", "HIDClass", "VirtioInput", 3,
                 {"vioinput.sys", "viohidkmdf.sys", "WdfCoInstaller01009.dll"}),
    "vioscsi": ("VirtioScsi", "1048", "SCSIAdapter", "vioscsi", 0, {"vioscsi.sys"}),
}


def real_infs(realdata: Path) -> list[Path]:
    files = sorted((realdata / "inf").rglob("*.inf"))
    assert len(files) == 40, "realdata/README.md promises 40 INF files"
    return files


def test_every_real_inf_parses_cleanly_with_the_expected_facts(realdata):
    for path in real_infs(realdata):
        driver, arch = path.parts[-3], path.parts[-2]
        base, bare_dev, cls, service, start, files = EXPECT[driver]
        old_vioscsi = driver == "vioscsi" and ("16000" in path.name or path.name == "vioscsi.inf")
        if old_vioscsi:
            base = "RHEL"
        parsed = parse_inf(path.read_bytes(), path.name)
        where = f"{driver}/{arch}/{path.name}"
        assert parsed.problems == (), where
        assert parsed.encoding == "cp1252", where
        assert parsed.version_value("Class").value == cls, where
        assert parsed.catalog_file(arch).value == f"{driver}.cat", where
        assert re.fullmatch(r"\d\d/\d\d/\d{4}", parsed.version_value("DriverVer").values[0]), where
        sel = parsed.models(arch)
        assert [c.section for c in sel.chosen] == [f"{base}.NT{arch}.6.1"], where
        other = "x86" if arch == "amd64" else "amd64"
        assert parsed.models(other).chosen == (), where
        ids = [i.upper() for c in sel.chosen for m in c.models for i in m.ids]
        bare = f"PCI\\VEN_1AF4&DEV_{bare_dev}"
        assert (bare in ids) is not old_vioscsi, where  # vioscsi 16000 has no bare VEN&DEV IDs
        assert any(i.startswith(bare + "&SUBSYS_11001AF4&REV_01") for i in ids), where
        model = next(m for c in sel.chosen for m in c.models if bare in [i.upper() for i in m.ids]
                     or m.hardware_id.upper().startswith(bare))
        install = parsed.install_section(model.install, arch)
        (svc,) = [s for s in parsed.add_services(install) if s.is_function_driver]
        assert svc.name == service, where
        si = parsed.service_install(svc.install_section)
        assert si.start_type == start, where
        assert set(parsed.source_disks_files(arch)) == {f.lower() for f in files}, where
        copied = set()
        for c in sel.chosen:
            for m in c.models:
                sec = parsed.install_section(m.install, arch)
                copied |= {f.name for f in parsed.copy_files(sec)[0]}
                copied |= {f.name for f in parsed.coinstallers(sec)[1]}
        assert copied == files, where


def test_real_infs_are_rejected_on_the_other_arch_with_a_reason(realdata):
    path = realdata / "inf" / "viostor" / "x86" / "viostor.inf"
    sel = parse_inf(path.read_bytes(), "viostor.inf").models("amd64")
    assert sel.chosen == ()
    assert sel.reason == "the INF only has NTx86.6.1 models: this is an x86 driver (wrong arch folder?)"
    assert sel.lineno == 49  # the [Manufacturer] entry


def test_real_vioinput_coinstaller_and_child_service(realdata):
    parsed = parse_inf((realdata / "inf" / "vioinput" / "amd64" / "vioinput.inf").read_bytes(), "vioinput.inf")
    co, _ = parsed.coinstallers("VirtioInput_Device.NT")
    assert [(c.dll, c.entry) for c in co] == [("WdfCoInstaller01009.dll", "WdfCoInstaller")]
    assert [s.name for s in parsed.add_services("VirtioInput_Child.NT")] == ["viohidkmdf"]
    assert parsed.get("VirtioInput_wdfsect", "KmdfLibraryVersion").value == "1.9"
    # netkvm's [Strings] keys differ in case from their uses (%OffLoad.TxLSO% vs Offload.TxLSO)
    net = parse_inf((realdata / "inf" / "netkvm" / "x86" / "netkvm.inf").read_bytes(), "netkvm.inf")
    assert any("Offload.Tx.LSO" in ln.values for ln in net.section("Parameters"))

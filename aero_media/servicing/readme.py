"""The serviced ISO's ``AERO_README.TXT``: what servicing did to this DVD, in words, from its ``servicing.json`` record.

One owner for the text, so the README and the record cannot disagree: the README is
rendered from the record, never from the settings directly. It says which images were
serviced (the recovery image inside each edition included), whether test mode and
``nointegritychecks`` are on, what the answer file (``autounattend.xml``) does if there is one,
and which setting turns each optional part off or on.
"""

from __future__ import annotations

from typing import Any

from ..spec.types import Vocabulary

NAME = "AERO_README.TXT"
"""Its name at the root of the serviced ISO (beside setup.exe; no Windows 7 DVD has a file of that name)."""


def _image_line(image: dict[str, Any]) -> str:
    changed = sum(1 for r in image["registry"] if r["changed"])
    return (f"  {image['wim']} image {image['index']} ({image['name'] or 'no name'}, {image['kind']}): "
            f"{changed} registry value(s) changed, {len(image['files'])} file(s) added")


def _recovery_lines(image: dict[str, Any]) -> list[str]:
    recovery = image.get("recovery")
    if recovery is None:
        return []
    if not recovery["serviced"]:
        return [f"    {recovery['path']}: not serviced ({recovery['why']})"]
    return [f"    {recovery['path']}: serviced (boot-critical storage driver and certificates)",
            *("    " + _image_line(i) for i in recovery["images"])]


def _answer_lines(answer: dict[str, Any] | None, arch: str, vocabulary: Vocabulary) -> list[str]:
    # From the record's answer_file (None: none written), so what the README says is what servicing.json says.
    if answer is None:
        setting = "install_media.answer_file"
        on = (f"{vocabulary.name(setting)} drivers-only" if vocabulary.from_command_line
              else f"set {setting}: drivers-only")
        return [f"Answer file: none (the default). For one that has Windows 7 Setup stage the drivers itself, {on}."]
    lines = [
        f"Answer file: {answer['path']} ({answer['variant']}, {answer['arch']}). Windows 7 Setup reads it from the "
        f"root of the disc by itself. It tells Setup to load the drivers in win7\\{arch}\\ in Windows PE "
        "(Microsoft-Windows-PnpCustomizationsWinPE) and to add them to the new system's driver store "
        "(Microsoft-Windows-PnpCustomizationsNonWinPE, offlineServicing pass). The paths are listed under every "
        "drive letter from C: to Z: except X:, so they hold whatever letter the disc gets.",
    ]
    if answer["variant"] == "full":
        disk = ("ERASES DISK 0 and installs onto one NTFS partition" if answer["partitioning"] == "wipe-disk-0"
                else "asks where to install")
        lines += [f"It also installs unattended: locale {answer['locale']}, time zone {answer['time_zone']}, "
                  f"local administrator {answer['account']}, the EULA accepted; Setup {disk}. It holds the "
                  "account's password (encoded, not encrypted) and any product key: keep this disc private."]
    lines += [f"To install without it: {answer['turn_off']} and service the DVD again, or delete {answer['path']} "
              "from a copy of the disc."]
    return lines


def render(record: dict[str, Any], vocabulary: Vocabulary) -> bytes:
    """The README for one serviced ISO (CRLF, ASCII); ``vocabulary`` names settings as the user sets them."""
    term, fix = vocabulary.term, vocabulary.fix
    options = record["options"]
    source = record["source"]
    lines = [
        "What aero-media changed on this Windows 7 DVD",
        "=============================================",
        "",
        f"Serviced from {source.get('iso', 'its WIMs')} (sha256 {source.get('sha256', '-')}) for "
        f"{record['arch']}. The servicing.json published with this ISO lists every change: image, hive, key, "
        "value, old and new data, and every file added with its sha256.",
        "",
        "Images:",
    ]
    for image in record["images"]:
        lines.append(_image_line(image))
        lines += _recovery_lines(image)
    lines += [
        "",
        "The boot-critical storage driver (its service and a CriticalDeviceDatabase key for every hardware ID "
        "of the device, transitional ones included) is in Windows PE and Setup in boot.wim, in each installed "
        "edition" + (", and in the recovery image (Windows\\System32\\Recovery\\winre.wim) inside each edition."
                     if options["winre"] else "."),
        "",
        f"Recovery images: {'serviced' if options['winre'] else 'left as they were'}; "
        + (f"to leave them alone, {fix('install_media.winre', 'false')}." if options["winre"]
           else f"to service them, drop {term('install_media.winre', 'false')}."),
        "Test mode (testsigning): " + ("on in boot\\BCD, efi\\microsoft\\boot\\bcd and each edition's "
                                       "BCD-Template, for test-signed drivers." if options["testsigning"]
                                       else "off."),
        "nointegritychecks: " + ("ON in the same stores (code-integrity checks off: a last resort); to turn it "
                                 f"off, drop {term('install_media.nointegritychecks', 'true')}."
                                 if options["nointegritychecks"]
                                 else "off (the default); to turn it on, as a last resort, "
                                      f"{fix('install_media.nointegritychecks', 'true')}."),
        "",
        *_answer_lines(record["answer_file"], record["arch"], vocabulary),
        "",
    ]
    text = "\r\n".join(lines)
    return text.encode("ascii", "replace")

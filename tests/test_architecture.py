"""The folders are the architecture: imports only flow down the stages, and win7/ stands alone."""

from __future__ import annotations

from aero_media.taskgraph.fingerprint import PACKAGE_ROOT, _index

# Lower layers never import higher ones. Same-layer imports are allowed within one package only.
LAYERS = {
    "aero_media": 0, "aero_media.errors": 0, "aero_media.log": 0, "aero_media.fsutil": 0, "aero_media.winnames": 0,
    "aero_media.buildlock": 0, "aero_media.systools": 0, "aero_media.ctrlc": 0,
    "aero_media.ending": 0,
    "aero_media.spec": 1,
    "aero_media.win7": 2,
    "aero_media.manifests": 3, "aero_media.paths": 3,
    "aero_media.sources": 4, "aero_media.answer": 4,  # the answer file: below both media that carry it
    "aero_media.stage": 5,
    "aero_media.media": 6, "aero_media.devtools": 6,
    "aero_media.servicing": 7,  # after the media: it ships the same certificates and $WinPEDriver$
    "aero_media.report": 7,  # reads the records of every stage, servicing's too, as JSON: imports none of them
    "aero_media.taskgraph": 8, "aero_media.cli": 9, "aero_media.entry": 10, "aero_media.__main__": 11,
}


def layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return key, LAYERS[key]
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def internal_imports() -> dict[str, set[str]]:
    index = _index(PACKAGE_ROOT, "aero_media")
    return {name: {i for i in mod.imports if i in index} for name, mod in index.items()}


def test_every_module_has_a_layer_and_imports_flow_down() -> None:
    problems = []
    for module, imports in sorted(internal_imports().items()):
        home, level = layer_of(module)
        for imp in sorted(imports):
            other, other_level = layer_of(imp)
            if other_level > level or (other_level == level and other != home and level > 0):
                problems.append(f"{module} imports {imp} ({other} is not below {home})")
    assert problems == []


def test_win7_depends_only_on_the_arch_and_device_types() -> None:
    allowed = {"aero_media", "aero_media.errors", "aero_media.systools",  # the tool-to-package table
               "aero_media.spec", "aero_media.spec.types", "aero_media.spec.contract"}
    for module, imports in internal_imports().items():
        if module.startswith("aero_media.win7"):
            outside = {i for i in imports if not i.startswith("aero_media.win7")} - allowed
            assert outside == set(), f"{module} imports {outside}"


def test_stages_do_not_import_doit() -> None:
    index = _index(PACKAGE_ROOT, "aero_media")
    for name, mod in index.items():
        if not name.startswith("aero_media.taskgraph") and name not in ("aero_media.cli",):
            assert not any(i == "doit" or i.startswith("doit.") for i in mod.imports), name


def test_every_subpackage_is_packaged() -> None:
    """A subpackage missing from pyproject's list would be absent from an installed wheel."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE_ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(PACKAGE_ROOT.parent).parts[:-1]) for p in PACKAGE_ROOT.rglob("__init__.py")}
    assert found - listed == set()

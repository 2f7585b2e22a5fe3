"""The folders are the architecture: imports only flow down the stages, and win7/ stands alone."""

from __future__ import annotations

from pipeline.taskgraph.fingerprint import PACKAGE_ROOT, _index

# Lower layers never import higher ones. Same-layer imports are allowed within one package only.
LAYERS = {
    "pipeline": 0, "pipeline.errors": 0, "pipeline.log": 0, "pipeline.fsutil": 0, "pipeline.winnames": 0,
    "pipeline.buildlock": 0, "pipeline.systools": 0,
    "pipeline.spec": 1,
    "pipeline.win7": 2,
    "pipeline.manifests": 3, "pipeline.paths": 3,
    "pipeline.sources": 4,
    "pipeline.stage": 5,
    "pipeline.media": 6, "pipeline.devtools": 6,
    "pipeline.servicing": 7,  # after the media: it ships the same certificates and $WinPEDriver$
    "pipeline.taskgraph": 8, "pipeline.cli": 9, "pipeline.__main__": 10,
}


def layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return key, LAYERS[key]
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def internal_imports() -> dict[str, set[str]]:
    index = _index(PACKAGE_ROOT, "pipeline")
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
    allowed = {"pipeline", "pipeline.errors", "pipeline.systools",  # the tool-to-package table
               "pipeline.spec", "pipeline.spec.types", "pipeline.spec.contract"}
    for module, imports in internal_imports().items():
        if module.startswith("pipeline.win7"):
            outside = {i for i in imports if not i.startswith("pipeline.win7")} - allowed
            assert outside == set(), f"{module} imports {outside}"


def test_stages_do_not_import_doit() -> None:
    index = _index(PACKAGE_ROOT, "pipeline")
    for name, mod in index.items():
        if not name.startswith("pipeline.taskgraph") and name not in ("pipeline.cli",):
            assert not any(i == "doit" or i.startswith("doit.") for i in mod.imports), name


def test_every_subpackage_is_packaged() -> None:
    """A subpackage missing from pyproject's list would be absent from an installed wheel."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE_ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(PACKAGE_ROOT.parent).parts[:-1]) for p in PACKAGE_ROOT.rglob("__init__.py")}
    assert found - listed == set()

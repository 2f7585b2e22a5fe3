"""The repository explains itself: the design page matches the enforced layers, and every cited page exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_architecture import LAYERS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# Where code, tests and docs may cite docs/<page>.md#<anchor>.
CITING = ("aero_media", "tests", "bench", "docs", "README.md")
# Aero's own pages, cited by their path in Aero's checkout (never ours: a page of ours by that name
# would make the citations ambiguous, so the test below refuses one).
AERO_PAGES = frozenset({"windows7-guest-tools.md"})


def design_layer_list(text: str) -> list[str]:
    """The modules the "Where things live" block of docs/design.md names, in order, as dotted names."""
    block = re.search(r"^```\naero_media/\n(.*?)^```$", text, re.M | re.S)
    assert block, "docs/design.md has no code block starting with 'aero_media/'"
    names = []
    for line in block.group(1).splitlines():
        if not re.match(r"  \S", line):
            continue  # a continuation line of a description
        for token in line.split():
            m = re.fullmatch(r"(\w+)(?:\.py|/)", token)
            if m is None:
                break  # the description starts
            names.append(f"aero_media.{m.group(1)}")
    return names


def test_design_lists_the_enforced_layers_in_order() -> None:
    names = design_layer_list((DOCS / "design.md").read_text(encoding="utf-8"))
    assert names == [n for n in LAYERS if n != "aero_media"]
    levels = [LAYERS[n] for n in names]
    assert levels == sorted(levels), "the layer table must list lower layers first"


def test_the_layer_list_parser_reads_names_not_descriptions() -> None:
    text = "```\naero_media/\n  a.py b.py   one: c.py\n  d/    e/ words\n        f.py continued\n```\n"
    assert design_layer_list(text) == ["aero_media.a", "aero_media.b", "aero_media.d", "aero_media.e"]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)}


def test_slug_follows_github() -> None:
    assert slug("$WinPEDriver$") == "winpedriver"
    assert slug("Aero's devices.cmd") == "aeros-devicescmd"
    assert slug("SHA-1 and SHA-2") == "sha-1-and-sha-2"


def citations() -> list[tuple[Path, str, str]]:
    """Every ``docs/<page>.md#<anchor>`` cited outside docs/, and every relative link between docs pages."""
    found = []
    for top in CITING:
        root = REPO / top
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.suffix not in (".py", ".md", ".json", ".cmd", ".txt") or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.parent == DOCS:
                # Our pages link to each other relatively; a bare docs/... there is another project's file.
                for m in re.finditer(r"\]\(([\w-]+\.md)?(?:#([\w-]+))?\)", text):
                    found.append((path, m.group(1) or path.name, m.group(2) or ""))
            else:
                for m in re.finditer(r"(?<![\w/])docs/([\w-]+\.md)(?:#([\w-]+))?", text):
                    found.append((path, m.group(1), m.group(2) or ""))
    return found


def test_every_cited_docs_page_and_section_exists() -> None:
    cited = citations()
    assert any(page == "windows7.md" for _, page, _ in cited)
    problems = [f"docs/{page} would shadow Aero's page of that name" for page in AERO_PAGES if (DOCS / page).exists()]
    for path, page, anchor in cited:
        if page in AERO_PAGES:
            continue
        target = DOCS / page
        if not target.is_file():
            problems.append(f"{path.relative_to(REPO)} cites docs/{page}, which does not exist")
        elif anchor and anchor not in anchors(target):
            problems.append(f"{path.relative_to(REPO)} cites docs/{page}#{anchor}, which is no heading there")
    assert problems == []


# Documents outside this repository, and the tracker's numbering, mean nothing to a reader of it.
_FOREIGN = re.compile("|".join((
    r"\.\./" + "shared",
    r"facts" + r" ?§",
    r"\b(?:virtio-win|servicing|tooling|signing|interop|install-media|aero-drivers|aero-interop)[ -]facts\b",
    r"\bissue" + r" [0-9]",
)), re.I)


def test_no_citation_points_outside_the_repository() -> None:
    problems = []
    for top in (*CITING, "CHANGELOG.md", "pyproject.toml"):
        root = REPO / top
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".md", ".json", ".toml", ".cmd", ".txt", ".yaml"):
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if _FOREIGN.search(line):
                    problems.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert problems == []


def test_the_design_diagram_shows_every_stage_and_task_group() -> None:
    """docs/design.md's first diagram names every Stage and every task group the task graph makes."""
    from aero_media.spec.types import Stage
    from aero_media.taskgraph.tasks import GROUP_GENERATORS

    text = (DOCS / "design.md").read_text(encoding="utf-8")
    diagram = text.split("```", 2)[1]
    words = set(re.findall(r"[a-z_]+", diagram))
    assert {s.value for s in Stage} <= words
    assert set(GROUP_GENERATORS) <= words

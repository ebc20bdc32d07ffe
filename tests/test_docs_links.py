"""Every link between the README, the changelog and the docs leads somewhere: a file that
exists and, when the link names a section (`page.md#section`), a heading of that page.

In a generated project the blocks about the template itself are gone, and their links with
them: the same check holds there. `pytest -k docs` selects these tests.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_FENCE = re.compile(r"\s*(```|~~~)")
_HEADING = re.compile(r"#{1,6}\s+(?P<title>.+?)\s*#*\s*\Z")


def pages(root: Path) -> list[Path]:
    found = [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").rglob("*.md"))]
    return [page for page in found if page.is_file()]


def prose(page: Path) -> list[tuple[int, str]]:
    """The page's lines outside code blocks, numbered."""
    lines, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lowercase, punctuation dropped, spaces
    as hyphens."""
    found = set()
    for _, line in prose(page):
        if heading := _HEADING.match(line):
            title = re.sub(r"[^\w\- ]", "", heading["title"].lower())
            found.add(title.replace(" ", "-"))
    return found


def broken_links(root: Path) -> list[str]:
    broken = []
    for page in pages(root):
        for number, line in prose(page):
            for match in _LINK.finditer(line):
                target = match["target"]
                if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
                    continue
                path, _, anchor = target.partition("#")
                linked = (page.parent / path).resolve() if path else page
                where = f"{page.relative_to(root)}:{number}: {target}"
                if not linked.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    broken.append(f"{where}: no such section")
    return broken


def test_docs_links_lead_somewhere() -> None:
    assert broken_links(ROOT) == []


def test_docs_link_check_catches_a_missing_page_and_a_missing_section(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "workers.md").write_text("# Workers\n\n## The policy knobs\n")
    (tmp_path / "README.md").write_text(
        "# Title\n\n"
        "[fine](docs/workers.md#the-policy-knobs) and [here](#title)\n"
        "[gone](docs/replicas.md)\n"
        "```console\n[not a link](nowhere.md)\n```\n"
        "[renamed](docs/workers.md#policy) and [external](https://example.com/x.md)\n"
    )
    assert broken_links(tmp_path) == [
        "README.md:4: docs/replicas.md: no such file",
        "README.md:8: docs/workers.md#policy: no such section",
    ]

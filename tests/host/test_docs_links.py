"""Every link between the repository's Markdown files lands: the file exists and, when the link
names a section (``FILE.md#section``), a heading of that file has that anchor, spelled as
GitHub spells it."""

import re
from pathlib import Path

import pytest

from voicenode_tools import REPO_ROOT

SKIP = {".git", ".venv", "node_modules"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")


def _markdown_files() -> list[Path]:
    return sorted(
        p for p in REPO_ROOT.rglob("*.md") if not SKIP & set(p.relative_to(REPO_ROOT).parts)
    )


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, Markdown marks and punctuation dropped
    (letters, digits, '-', '_' and spaces kept), spaces turned into '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its words
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in ``path`` (the second of a name numbered as GitHub numbers it)
    and every ``<a id="...">`` set by hand."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")):
        out.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def test_slug_is_githubs():
    assert slug("Results (27 Nov 2026)") == "results-27-nov-2026"
    assert slug('"hey jarvis"') == "hey-jarvis"
    assert slug("FRR at 0.1 FA/h: ten more hours of negatives (`voicenode bench longneg`)") == (
        "frr-at-01-fah-ten-more-hours-of-negatives-voicenode-bench-longneg"
    )
    assert slug("Rebuilt from nothing (27 Nov): the third models") == (
        "rebuilt-from-nothing-27-nov-the-third-models"
    )


def broken_links(page: Path) -> list[str]:
    """The links of ``page`` that land nowhere, each with why."""
    broken = []
    for line in _prose(page.read_text(encoding="utf-8")):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):  # a link shown as code is not one
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
                continue
            path, _, section = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{target}: no such file")
            elif section and dest.suffix == ".md" and section not in anchors(dest):
                broken.append(f"{target}: no heading with that anchor in {dest.name}")
    return broken


def test_anchors_are_githubs(tmp_path):
    page = tmp_path / "a.md"
    page.write_text(
        '# Top\n\n## Two words\n\n## Two words\n\n```\n## not a heading\n```\n<a id="here"></a>\n'
    )
    assert anchors(page) == {"top", "two-words", "two-words-1", "here"}


def test_a_link_to_nowhere_is_found(tmp_path):
    (tmp_path / "b.md").write_text("# Bee\n")
    page = tmp_path / "a.md"
    page.write_text(
        "# A\n[ok](b.md#bee) [ok](#a) [web](https://example.com/x.md) `[code](nowhere.md)`\n"
        "[gone](c.md) [wrong](b.md#wasp) [self](#nope)\n"
    )
    assert broken_links(page) == [
        "c.md: no such file",
        "b.md#wasp: no heading with that anchor in b.md",
        "#nope: no heading with that anchor in a.md",
    ]


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_links_land(page):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(REPO_ROOT)}: " + "; ".join(broken)

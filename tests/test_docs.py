"""The README is a short front page (issue #23) and every relative link in it and in docs/ resolves."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), ![alt](image)
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.M)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", h))


def _links(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code holds no links
    text = re.sub(r"`[^`\n]*`", "", text)
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if not re.match(r"^[a-z]+://|^mailto:", target):
            yield target


def test_front_page_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= 150, f"README.md has {n} lines; move the detail into docs/"


def _broken(pages: list[Path], root: Path) -> list[str]:
    """Relative links among ``pages`` whose file, or whose ``#heading`` in a markdown file, does not exist."""
    bad = []
    for page in pages:
        for target in _links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{page.relative_to(root)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                if anchor not in {_anchor(h) for h in HEADING.findall(dest.read_text(encoding="utf-8"))}:
                    bad.append(f"{page.relative_to(root)}: {target} (no heading #{anchor})")
    return bad


def test_every_relative_link_resolves():
    bad = _broken(PAGES, ROOT)
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n[ok](docs/a.md#the-b-part) [gone](docs/missing.md) "
                                        "[anchor](docs/a.md#nope) `[code](no.md)`\n```\n[block](no.md)\n```\n")
    (tmp_path / "docs" / "a.md").write_text("# A\n## The `B` part\n")
    bad = _broken([tmp_path / "README.md"], tmp_path)
    assert bad == ["README.md: docs/missing.md (no such file)", "README.md: docs/a.md#nope (no heading #nope)"], bad

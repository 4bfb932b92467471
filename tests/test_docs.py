"""The documentation: the site builds strictly (no broken page, link or anchor), and every
relative link in the README leads to a file that exists."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # the target of a Markdown link or image


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown text that name a file of the repository: no URL, no
    anchor of the same page; a target's own anchor cut off."""
    targets = [match.split("#", 1)[0] for match in LINK.findall(text)]
    return [t for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")  # the theme, mkdocs-material
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    # Every page of docs/ is in the site, the root's ARCHITECTURE.md included.
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"}
    assert {p for p in pages if not (site / p / "index.html").is_file()} == set()
    assert "How data flows" in (site / "architecture" / "index.html").read_text()


def test_every_relative_link_in_the_readme_names_a_file():
    links = relative_links((ROOT / "README.md").read_text())
    assert "docs/reading.md" in links and "LICENSE" in links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_relative_links_are_found_and_urls_left_out():
    text = "[a](docs/a.md#x) ![b](docs/b.png) [c](https://x.org/y) [d](#here) [e](mailto:m)"
    assert relative_links(text) == ["docs/a.md", "docs/b.png"]


def test_the_pictures_the_docs_send_are_shipped():
    """The curl lines and snippets read pictures the repository ships, so they run as
    pasted in a fresh clone (`@FILE` for curl, a quoted path under data/)."""
    texts = [(ROOT / "README.md").read_text()] + [
        page.read_text() for page in (ROOT / "docs").glob("*.md")]
    named = {name for text in texts
             for name in re.findall(r"""(?:@|["'])(data/user_images/[^\s"']+)""", text)}
    assert "data/user_images/photo_7.jpg" in named
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []


def test_the_docs_command_to_retrain_reruns_train_alone(project):
    """The training page's `dvc repro -f ...` (after a change of checkpoint pacing) reruns
    train, and neither download nor prepare before it (DVC's `-f` alone would)."""
    text = (ROOT / "docs" / "training.md").read_text()
    command = re.search(r"`(dvc repro -f[^`]*)`", text)[1].split()
    dry = project.dvc(*command[1:], "--dry").stdout
    assert re.findall(r"Running stage '(\w+)'", dry) == ["train"]

"""README, docs/ and the benches' results point only at what exists, and say what it does.

Every relative link must reach a file (and its heading, when it names one), and every
repository path written in backticks must be there: moved text and renamed modules are
where documentation goes stale first. A few statements the program can contradict are
checked against it too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.contract import TASKS
from schemas.responses import VideoDeleteResponse
from tests.support import ROOT

PAGES = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
TOP_DIRS = ("worker", "tasks", "handlers", "schemas", "tests", "docs", "bench", "migrations")
ROOT_FILES = (
    "Makefile",
    "Dockerfile",
    "pyproject.toml",
    "docker-compose.yml",
    "celeryconfig.py",
    "alembic.ini",
)


def prose(text: str) -> str:
    """The page without its fenced blocks (code, consoles, pictures)."""
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", prose(page.read_text()), re.M)}


def repo_path(span: str) -> str | None:
    """The repository path a code span names, or None when it names something else."""
    text = span.strip().rstrip(".,:;")
    if text.startswith("./"):
        text = text[2:]
    if text in ROOT_FILES:
        return text
    if any(mark in text for mark in (" ", "<", "…", "...", "{", "=", "(")):
        return None
    head = text.split("/", 1)[0]
    if head in TOP_DIRS and "/" in text:
        return text.split("#", 1)[0].split("::", 1)[0]
    return None


def exists(path: str) -> bool:
    if any(char in path for char in "*?["):
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_its_heading(page: Path):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_in_backticks_exists(page: Path):
    named = [repo_path(span) for span in CODE_SPAN.findall(prose(page.read_text()))]
    missing = sorted({path for path in named if path and not exists(path)})
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_the_docs_table_of_contents_lists_every_page():
    contents = (ROOT / "docs" / "README.md").read_text()
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= set(re.findall(r"\]\(([\w-]+\.md)\)", contents))


def test_every_delete_answer_shown_carries_every_field_of_the_answer():
    fields = set(VideoDeleteResponse.model_fields)
    shown = []
    for page in PAGES:
        for block in re.findall(r"^```[a-z]*\n(.*?)^```", page.read_text(), re.M | re.S):
            if '"files_deleted"' in block and '"message"' in block:
                shown.append((page.name, block))
    assert shown, "no videos.delete answer is shown anywhere"
    for name, block in shown:
        present = set(re.findall(r'"(\w+)":', block))
        assert fields <= present, f"{name}: a delete answer without {fields - present}"


def test_each_task_in_the_calling_table_is_on_the_queue_the_task_table_gives_it():
    queue_of = {spec.name: spec.queue for spec in TASKS}
    table = (ROOT / "docs" / "calling.md").read_text()
    rows = re.findall(r"^\| `(videos\.\w+)` \| `([\w.]+)` \|", table, re.M)
    assert len(rows) >= 10
    assert [(name, queue) for name, queue in rows if queue_of.get(name) != queue] == []

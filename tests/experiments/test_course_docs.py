"""The course stays in step with the code: figures exist, cited functions exist, quoted code is real code."""

import importlib
import re

import pytest

from experiments.common import REPO_ROOT

COURSE = REPO_ROOT / "docs" / "course"
CHAPTERS = sorted(COURSE.glob("0*.md"))
EXPERIMENTS = sorted(p.stem for p in (REPO_ROOT / "experiments").glob("*.py") if p.stem not in ("__init__", "common"))
REFERENCE_MODULES = ("activations", "mlp", "losses", "optim", "gan", "train", "data", "metrics", "recipes")


def test_there_are_eight_chapters_all_linked_from_the_index():
    index = (COURSE / "README.md").read_text()
    assert len(CHAPTERS) == 8
    for chapter in CHAPTERS:
        assert f"]({chapter.name})" in index, chapter.name


@pytest.mark.parametrize("page", CHAPTERS + [COURSE / "README.md"], ids=lambda p: p.name)
def test_every_figure_a_page_shows_exists(page):
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
        assert (page.parent / target).is_file(), f"{page.name} shows missing {target}"


def test_every_experiment_is_in_the_index_and_a_chapter_and_has_its_figure():
    index = (COURSE / "README.md").read_text()
    chapters = "".join(c.read_text() for c in CHAPTERS)
    for name in EXPERIMENTS:
        assert f"python -m experiments.{name}" in index, name
        assert f"experiments/{name}.py" in chapters or f"experiments.{name}" in chapters, name
        assert (COURSE / "figures" / f"{name}.png").is_file(), name


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_cited_reference_functions_exist(page):
    cited = re.findall(r"`(?:reference/)?(" + "|".join(REFERENCE_MODULES) + r")(?:\.py)?[`.](\w+)", page.read_text())
    for module, name in cited:
        if name in ("py",):
            continue
        assert hasattr(importlib.import_module(f"reference.{module}"), name), f"{page.name}: {module}.{name}"


def _normalise(line: str) -> str:
    return " ".join(line.split("#")[0].split())


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_quoted_python_is_the_reference_code(page):
    """Every line of a ```python block (comments aside) is a line of reference/ or experiments/."""
    sources = [p.read_text() for p in (REPO_ROOT / "reference").glob("*.py")]
    code_lines = {_normalise(line) for source in sources for line in source.splitlines()} - {""}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.splitlines():
            quoted = _normalise(line)
            if quoted:
                assert quoted in code_lines, f"{page.name} quotes a line that is not in reference/: {line!r}"

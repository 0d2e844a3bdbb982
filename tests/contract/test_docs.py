"""The docs stay true: the configuration reference is what the code writes, and no link leaves the repository."""

import re
from pathlib import Path

import pytest

from resumo import config_reference

ROOT = Path(__file__).parents[2]


def test_configuration_reference_is_what_make_docs_writes():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == config_reference.markdown(), "docs/configuration.md is stale: run `make docs` and commit it"


def test_the_reference_names_every_field_of_every_section():
    from pydantic import BaseModel

    from resumo.config import DERIVED, PipelineConfig

    def keys(model: BaseModel, path: str = ""):
        for name in type(model).model_fields:
            value, key = getattr(model, name), f"{path}{name}"
            yield key
            if isinstance(value, BaseModel) and key not in DERIVED:  # a section that follows another is one row
                yield from keys(value, f"{key}.")

    text = config_reference.markdown()
    missing = [key for key in keys(PipelineConfig()) if f"`{key}`" not in text]
    assert missing == []


# --- README and links -------------------------------------------------------------------

README = ROOT / "README.md"
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto: ...


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def links(text: str) -> list[str]:
    """Link targets in Markdown `text`, leaving out code blocks and code spans."""
    prose = CODE.sub("", FENCE.sub("", text))
    return INLINE.findall(prose) + REFERENCE.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(document: Path, text: str | None = None) -> list[str]:
    broken = []
    for target in links(document.read_text(encoding="utf-8") if text is None else text):
        if EXTERNAL.match(target):
            continue
        location, _, anchor = target.partition("#")
        path = (document.parent / location).resolve() if location else document
        if location.startswith("/") or not path.is_relative_to(ROOT.resolve()):
            broken.append(f"{target}: leaves the repository")
        elif not path.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT.resolve())}")
    return broken


def test_the_readme_is_short_and_keeps_the_quick_start():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md is a front page: move detail into docs/"
    assert "make run" in text and "make test" in text
    costs = text.split("\n## What a run costs\n")[1].split("\n## ")[0]
    assert "(docs/gpu.md)" in costs


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(document):
    assert broken_links(document) == []


def test_the_link_check_has_teeth():
    page = ROOT / "docs" / "cluster.md"
    text = (
        "[a](cluster.md) [b](../README.md#quick-start) [c](https://example.org/x) `[d](../nowhere.md)`\n"
        "[e](../../shared/DESIGN.md) [f](missing.md) [g](cluster.md#no-such-heading)\n[h]: /etc/passwd\n"
        "```\n[i](../../outside.md)\n```\n"
    )
    assert broken_links(page, text) == [
        "../../shared/DESIGN.md: leaves the repository",
        "missing.md: no such file",
        "cluster.md#no-such-heading: no heading #no-such-heading in docs/cluster.md",
        "/etc/passwd: leaves the repository",
    ]


# --- the module list --------------------------------------------------------------------


def test_development_lists_every_module_on_its_floor():
    from tests.contract.test_import_graph import FLOORS, LIBRARY

    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("\n## Modules\n")[1].split("\n## ")[0]
    listed = {}
    for floor in re.split(r"^### ", section, flags=re.M)[1:]:
        name, _, body = floor.partition("\n")
        for module in re.findall(r"^- `(\w+)`:", body, re.M):
            listed[module] = name.strip()
    on_disk = {path.stem for path in LIBRARY.glob("*.py") if path.stem != "__init__"}
    assert sorted(listed) == sorted(on_disk), "list every module of src/resumo in docs/development.md, once"
    assert listed == {module: floor for floor, members in FLOORS.items() for module in members}

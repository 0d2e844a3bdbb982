"""The docs stay true: the configuration reference is what the code writes, and no link leaves the repository."""

from pathlib import Path

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

"""docs/CONFIGURATION.md is the generator's output: every setting documented, none stale."""

from __future__ import annotations

from pathlib import Path

from bucketrun.api.settings import ApiSettings
from bucketrun.config_reference import configuration_reference as reference_markdown
from dispatcher.runtime.settings import environment_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"


def test_the_committed_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        "regenerate: python -m bucketrun.config_reference > docs/CONFIGURATION.md"
    )


def test_every_variable_is_in_the_reference_with_a_documentation() -> None:
    text = reference_markdown()
    for variable, doc in environment_reference():
        assert f"**`{variable}`**" in text
        assert doc, f"{variable} has no documentation"
    for name in ApiSettings.model_fields:
        assert f"**`BUCKETRUN_API__{name.upper()}`**" in text
    assert "(undocumented)" not in text

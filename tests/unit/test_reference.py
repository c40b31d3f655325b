"""The README's scenario reference is the models' own: every key, current."""

from pathlib import Path

import pytest

from sim.scenario.document import Scenario
from sim.scenario.reference import END, START, replace_reference, scenario_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_reference_is_current():
    text = README.read_text(encoding="utf-8")
    assert replace_reference(text) == text, "stale: run `twin schema --readme README.md`"


def test_every_field_of_every_section_is_a_row():
    reference = scenario_reference()
    for section, field in Scenario.model_fields.items():
        if section == "assertions":
            assert "| `assert` |" in reference
            continue
        annotation = field.annotation
        if section == "plants":  # a list of plants: `plants[].id`
            annotation, section = annotation.__args__[0], "plants[]"
        nested = getattr(annotation, "model_fields", None)
        if nested is None:
            assert f"| `{section}` |" in reference
        else:
            for name in nested:
                assert f"| `{section}.{name}" in reference


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        replace_reference("# a README\n")
    assert START in README.read_text() and END in README.read_text()

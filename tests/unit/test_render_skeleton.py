"""Parsed-skeleton rendering (`dispatcher.rendering.skeleton`) gives exactly what parsing every render gives.

Each check compares the fast path (`render_job`, a cached skeleton filled with the values) with the
ordinary path (the full text rendered and parsed) on the same inputs, types included.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.rendering.context import job_context
from dispatcher.rendering.render import DEFAULT_TEMPLATE_DIR, JobRenderer, RenderError
from dispatcher.rendering.skeleton import NOT_PLAIN, NotPlainError, Slot, build_skeleton, identical
from dispatcher.rendering.template_env import SLOT_PREFIX
from tests.unit.test_rendering import GOLDEN_CASES, HOSTILE, MINIMAL, event, grants_for, service_from


def ordinary(renderer: JobRenderer, service: Any, evt: Any) -> dict[str, Any]:
    """The Job rendered, parsed and checked without any skeleton."""
    variables = job_context(service, evt, grants_for(service), renderer.settings)
    return renderer._render_and_parse(renderer._job, variables)


def test_golden_cases_are_identical_on_both_paths() -> None:
    renderer = JobRenderer()
    for case, (make, given_bucket, given_key) in GOLDEN_CASES.items():
        service = make()
        bucket = given_bucket or service.inputs[0].bucket
        key = given_key or f"{service.inputs[0].folder}/x.txt"
        for attempt in range(3):  # the first learns the skeleton, the others use it
            evt = event(bucket, key.replace(".", f"-{attempt}."))
            fast = renderer.render_job(service, evt, grants_for(service))
            assert identical(fast, ordinary(renderer, service, evt)), (case, attempt)
    assert any(skeleton is not None for skeleton in renderer._skeletons.values())


def test_filled_documents_share_nothing() -> None:
    renderer = JobRenderer()
    service = service_from(MINIMAL)
    first = renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))
    second = renderer.render_job(service, event("photos", "in/b.txt"), grants_for(service))
    first["metadata"]["labels"]["changed"] = "yes"
    first["spec"]["template"]["spec"]["containers"][0]["env"].clear()
    assert "changed" not in second["metadata"]["labels"]
    assert second["spec"]["template"]["spec"]["containers"][0]["env"]
    third = renderer.render_job(service, event("photos", "in/c.txt"), grants_for(service))
    assert "changed" not in third["metadata"]["labels"]
    assert third["spec"]["template"]["spec"]["containers"][0]["env"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_keys_and_variables_are_identical_on_both_paths(value: str) -> None:
    renderer = JobRenderer()
    base = service_from(MINIMAL)
    service = base.model_copy(update={"variables": {**base.variables, "GREETING": value}})
    renderer.render_job(service, event("photos", "in/warm-up.txt"), grants_for(service))
    hostile = _event_with_key(f"in/{value}")
    assert identical(
        renderer.render_job(service, hostile, grants_for(service)), ordinary(renderer, service, hostile)
    )


def _event_with_key(key: str) -> Any:
    template = event("photos", "in/plain.txt")
    record = {
        **template.record,
        "s3": {**template.record["s3"], "object": {**template.record["s3"]["object"]}},
    }
    record["s3"]["object"]["key"] = key
    return dataclasses.replace(template, key=key, record=record)


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=120),
    value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
)
def test_arbitrary_values_are_identical_on_both_paths(key: str, value: str) -> None:
    renderer = _SHARED
    base = service_from(MINIMAL)
    service = base.model_copy(update={"variables": {**base.variables, "GREETING": value}})
    evt = _event_with_key(f"in/{key}")
    try:
        expected = ordinary(renderer, service, evt)
    except RenderError:
        with pytest.raises(RenderError):
            renderer.render_job(service, evt, grants_for(service))
        return
    assert identical(renderer.render_job(service, evt, grants_for(service)), expected)


_SHARED = JobRenderer()


def _override(tmp_path: Path, job_template: str) -> JobRenderer:
    (tmp_path / "job.yaml.j2").write_text(job_template)
    return JobRenderer(template_dirs=[tmp_path])


def test_a_value_inside_a_longer_scalar_is_rendered_the_ordinary_way(tmp_path: Path) -> None:
    original = (DEFAULT_TEMPLATE_DIR / "job.yaml.j2").read_text()
    renderer = _override(
        tmp_path, original.replace("{{ job.backoff_limit | tojson }}", "x{{ job.backoff_limit | tojson }}")
    )
    service = service_from(MINIMAL)
    with pytest.raises(RenderError, match="backoffLimit 'x0'"):
        renderer.render_job(service, event("photos", "in/a.txt"), grants_for(service))
    renderer = _override(
        tmp_path,
        original.replace(
            "{{ job.name | tojson }}", "{{ job.name | tojson }}\n  # {{ job.backoff_limit | tojson }}"
        ),
    )
    for name in ("a", "b"):
        evt = event("photos", f"in/{name}.txt")
        assert identical(
            renderer.render_job(service, evt, grants_for(service)), ordinary(renderer, service, evt)
        )
    assert list(renderer._skeletons.values()) == [None]  # the comment's placeholder is in no node


def test_values_that_steer_control_flow_get_a_skeleton_per_shape(tmp_path: Path) -> None:
    original = (DEFAULT_TEMPLATE_DIR / "job.yaml.j2").read_text()
    steered = original.replace(
        "  suspend: {{ job.suspend | tojson }}",
        "{%- if job.annotations['bucketrun.io/key'].endswith('.jpg') %}\n"
        "  completions: {{ job.backoff_limit | tojson }}\n{%- endif %}\n"
        "  suspend: {{ job.suspend | tojson }}",
    )
    renderer = _override(tmp_path, steered)
    service = service_from(MINIMAL)
    for key in ("in/a.txt", "in/b.jpg", "in/c.txt", "in/d.jpg"):
        evt = event("photos", key)
        job = renderer.render_job(service, evt, grants_for(service))
        assert identical(job, ordinary(renderer, service, evt))
        assert ("completions" in job["spec"]) is key.endswith(".jpg")
    assert len(renderer._skeletons) == 2
    assert all(skeleton is not None for skeleton in renderer._skeletons.values())


def test_a_float_value_takes_the_ordinary_path(tmp_path: Path) -> None:
    original = (DEFAULT_TEMPLATE_DIR / "job.yaml.j2").read_text()
    renderer = _override(
        tmp_path, original.replace("{{ job.suspend | tojson }}", "{{ (job.backoff_limit + 1e20) | tojson }}")
    )
    service = service_from(MINIMAL)
    for name in ("a", "b"):
        evt = event("photos", f"in/{name}.txt")
        job = renderer.render_job(service, evt, grants_for(service))
        assert job["spec"]["suspend"] == "1e+20"  # YAML 1.1 reads JSON's 1e+20 as a string
        assert identical(job, ordinary(renderer, service, evt))


def test_a_lone_surrogate_is_refused_on_both_paths() -> None:
    renderer = JobRenderer()
    base = service_from(MINIMAL)
    renderer.render_job(base, event("photos", "in/a.txt"), grants_for(base))
    service = base.model_copy(update={"variables": {"BAD": "x\udc80y"}})
    with pytest.raises(RenderError, match=re.escape("lone surrogate")):
        renderer.render_job(service, event("photos", "in/b.txt"), grants_for(service))
    with pytest.raises(RenderError, match=re.escape("lone surrogate")):
        ordinary(renderer, service, event("photos", "in/b.txt"))


# -- build_skeleton and fill, directly ------------------------------------------------------------------


def slot(index: int) -> str:
    return f"{SLOT_PREFIX}{index}"


def test_build_skeleton_marks_whole_placeholder_nodes() -> None:
    skeleton = build_skeleton({"a": slot(0), "b": [1, slot(1)], "c": {"d": "text"}}, SLOT_PREFIX, 2)
    assert skeleton is not None
    assert skeleton.root == {"a": Slot(0), "b": [1, Slot(1)], "c": {"d": "text"}}
    assert skeleton.fill(["x", {"y": [True]}]) == {"a": "x", "b": [1, {"y": [True]}], "c": {"d": "text"}}
    with pytest.raises(NotPlainError):
        skeleton.fill(["x", NOT_PLAIN])
    with pytest.raises(NotPlainError):
        skeleton.fill(["x"])


@pytest.mark.parametrize(
    "document",
    [
        {"a": f"x{slot(0)}"},  # part of a longer scalar
        {slot(0): "a"},  # a mapping key
        {"a": slot(0), "b": slot(0)},  # seen twice, slot 1 missing
        {"a": slot(0), "when": date(2026, 1, 1)},  # a YAML timestamp
        {"a": slot(0), "set": {1, 2}},
        [slot(0), slot(1)],  # not a mapping
        {"a": f"{slot(0)}0"},  # slot 00: not one of ours
    ],
)
def test_build_skeleton_refuses_what_cannot_stand_in_for_a_parse(document: Any) -> None:
    assert (
        build_skeleton(document, SLOT_PREFIX, 2 if isinstance(document, list) or "b" in document else 1)
        is None
    )


def test_identical_tells_bools_from_ints() -> None:
    assert identical({"a": [1, "x", None]}, {"a": [1, "x", None]})
    assert not identical({"a": 1}, {"a": True})
    assert not identical({"a": 1, "b": 2}, {"b": 2, "a": 1})  # key order is part of the document

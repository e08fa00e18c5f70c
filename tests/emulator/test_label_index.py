"""The store's label index: a list by label answers exactly what a scan of every object would, pages
included, through creates, relabelling updates and patches, and deletes; and it reads only the objects the
index names (a Job's pods among thousands), which is what keeps the emulator fast at soak scale."""

from __future__ import annotations

import random

import pytest

from tests.k8s_emulator.objects import Objects
from tests.k8s_emulator.patches import MERGE_PATCH
from tests.k8s_emulator.resources import CONFIG_MAPS, PODS
from tests.k8s_emulator.selectors import Selection, parse_field_selector, parse_label_selector
from tests.k8s_emulator.store import Store

NAMESPACES = ("ns-a", "ns-b")
SELECTORS = (
    "",
    "tier=web",
    "tier==db",
    "tier!=web",
    "tier in (web, db)",
    "tier in (web, web)",
    "tier notin (web)",
    "tier=web,canary",
    "tier=web,canary=yes",
    "canary=yes,tier in (db, web)",
    "!canary",
    "tier=nowhere",
    "shard>3",
)


def _labels(rng: random.Random) -> dict[str, str]:
    labels = {}
    if rng.random() < 0.8:
        labels["tier"] = rng.choice(("web", "db", "cache"))
    if rng.random() < 0.3:
        labels["canary"] = "yes"
    labels["shard"] = str(rng.randrange(8))
    return labels


def _populated(seed: int) -> Objects:
    """Config maps in two namespaces, created, relabelled (PUT and PATCH), annotated and deleted at random."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix of objects, not a secret
    objects = Objects(Store())
    names: list[tuple[str, str]] = []
    for index in range(150):
        namespace = rng.choice(NAMESPACES)
        body = {"metadata": {"name": f"cm-{index:03d}", "labels": _labels(rng)}}
        objects.create(CONFIG_MAPS, namespace, body)
        names.append((namespace, f"cm-{index:03d}"))
    for namespace, name in rng.sample(names, 60):
        current = objects.get(CONFIG_MAPS, namespace, name)
        changed = rng.random()
        if changed < 0.3:
            body = {**current, "metadata": {**current["metadata"], "labels": _labels(rng)}}
            objects.update(CONFIG_MAPS, namespace, name, body)
        elif changed < 0.6:
            patch = {"metadata": {"labels": {"tier": rng.choice(("web", "db", None)), "canary": None}}}
            objects.patch(CONFIG_MAPS, namespace, name, MERGE_PATCH, patch)
        elif changed < 0.8:
            patch = {"metadata": {"annotations": {"seen": "yes"}}}  # labels untouched
            objects.patch(CONFIG_MAPS, namespace, name, MERGE_PATCH, patch)
        else:
            objects.delete(CONFIG_MAPS, namespace, name)
    return objects


def _scanned(objects: Objects, selection: Selection) -> list[str]:
    """What a list must answer, by brute force over every stored object."""
    return [
        f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        for obj in objects.store.list_objects(CONFIG_MAPS.plural)
        if selection.matches(obj)
    ]


def _listed(objects: Objects, selection: Selection, limit: int | None = None) -> list[str]:
    names: list[str] = []
    token = None
    while True:
        page = objects.list(CONFIG_MAPS, selection, limit=limit, continue_token=token)
        names += [f"{obj['metadata']['namespace']}/{obj['metadata']['name']}" for obj in page["items"]]
        token = page["metadata"].get("continue")
        if limit is not None:
            assert len(page["items"]) <= limit
        if not token:
            return names


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("namespace", [None, "ns-a"])
@pytest.mark.parametrize("selector", SELECTORS)
def test_a_list_by_label_answers_what_a_scan_of_every_object_answers(seed, namespace, selector):
    objects = _populated(seed)
    selection = Selection(namespace, parse_label_selector(selector))
    expected = _scanned(objects, selection)
    assert _listed(objects, selection) == expected
    assert _listed(objects, selection, limit=7) == expected


def test_a_label_and_field_selector_together_still_apply_both():
    objects = _populated(4)
    selection = Selection(
        "ns-b", parse_label_selector("tier=db"), parse_field_selector("metadata.name!=cm-001", "configmaps")
    )
    expected = _scanned(objects, selection)
    assert expected
    assert _listed(objects, selection, limit=5) == expected


def test_pages_without_selectors_count_the_items_left():
    objects = Objects(Store())
    for index in range(10):
        objects.create(CONFIG_MAPS, "ns-a", {"metadata": {"name": f"cm-{index}"}})
    objects.create(CONFIG_MAPS, "ns-b", {"metadata": {"name": "elsewhere"}})
    first = objects.list(CONFIG_MAPS, Selection("ns-a"), limit=4)
    assert first["metadata"]["remainingItemCount"] == 6
    second = objects.list(
        CONFIG_MAPS, Selection("ns-a"), limit=4, continue_token=first["metadata"]["continue"]
    )
    assert [obj["metadata"]["name"] for obj in second["items"]] == ["cm-4", "cm-5", "cm-6", "cm-7"]
    assert second["metadata"]["remainingItemCount"] == 2
    last = objects.list(
        CONFIG_MAPS, Selection("ns-a"), limit=4, continue_token=second["metadata"]["continue"]
    )
    assert [obj["metadata"]["name"] for obj in last["items"]] == ["cm-8", "cm-9"]
    assert "continue" not in last["metadata"]


def test_a_jobs_pods_are_listed_by_controller_uid_without_reading_the_other_pods(monkeypatch):
    objects = Objects(Store())
    for index in range(3000):
        labels = {"batch.kubernetes.io/controller-uid": f"uid-{index // 2}", "app": "soak"}
        pod = {
            "metadata": {"name": f"pod-{index:04d}", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        objects.create(PODS, "jobs", pod)
    read = []
    matches = Selection.matches

    def counting(self: Selection, obj: dict) -> bool:
        read.append(obj["metadata"]["name"])
        return matches(self, obj)

    monkeypatch.setattr(Selection, "matches", counting)
    selection = Selection("jobs", parse_label_selector("app=soak,batch.kubernetes.io/controller-uid=uid-700"))
    listed = objects.list(PODS, selection)
    assert [pod["metadata"]["name"] for pod in listed["items"]] == ["pod-1400", "pod-1401"]
    assert sorted(read) == ["pod-1400", "pod-1401"]  # not the 3,000 pods a scan would read


def test_a_deleted_or_relabelled_object_leaves_the_index():
    objects = Objects(Store())
    objects.create(CONFIG_MAPS, "ns-a", {"metadata": {"name": "one", "labels": {"k": "v"}}})
    objects.create(CONFIG_MAPS, "ns-a", {"metadata": {"name": "two", "labels": {"k": "v"}}})
    objects.patch(CONFIG_MAPS, "ns-a", "one", MERGE_PATCH, {"metadata": {"labels": {"k": "w"}}})
    objects.delete(CONFIG_MAPS, "ns-a", "two")
    assert objects.store.labelled(CONFIG_MAPS.plural, "k", "v") == set()
    assert objects.store.labelled(CONFIG_MAPS.plural, "k", "w") == {("ns-a", "one")}
    assert _listed(objects, Selection("ns-a", parse_label_selector("k=v"))) == []
    assert _listed(objects, Selection("ns-a", parse_label_selector("k in (v, w)"))) == ["ns-a/one"]

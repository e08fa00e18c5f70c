"""`bucketrun.admin.jobs.read_logs` without servers: a Job's logs from its newest pod, else from its
record, each source asked only for the containers chosen, and a service's Jobs only when one is named
(what `bucketrun jobs logs` and `GET /system/logs/SERVICE/JOB` share)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bucketrun.admin.jobs import chosen_containers, read_logs
from dispatcher.domain.constants import LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from watcher.records import StoredRecord


def job(name: str, service: str) -> dict[str, Any]:
    containers = [{"name": "run"}, {"name": "stage-out"}]
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: service},
        },
        "spec": {"template": {"spec": {"initContainers": [{"name": "stage-in"}], "containers": containers}}},
    }


@dataclass
class FakeAdmin:
    """Jobs by name, each with its pods' names and (pod, container) logs."""

    jobs: dict[str, dict[str, Any]]
    pods: dict[str, list[str]] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def read_job(self, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    async def job_pods(self, found: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"metadata": {"name": pod}} for pod in self.pods.get(found["metadata"]["name"], [])]

    async def container_log(
        self, found: dict[str, Any], pod: str, container: str, *, tail_lines: int | None = None
    ) -> str | None:
        self.asked.append((pod, container))
        text = self.logs.get((pod, container))
        return text if text is None or tail_lines is None else "\n".join(text.splitlines()[-tail_lines:])


@dataclass
class FakeStore:
    """Records by (service, name), with their kept logs by container."""

    records: dict[tuple[str, str], tuple[dict[str, Any], dict[str, str]]]

    async def find(self, name: str | None = None, *, service: str | None = None) -> list[StoredRecord]:
        return [
            StoredRecord(f"records/{each}/{name}/status.json", record)
            for (each, named), (record, _) in self.records.items()
            if named == name and service in (None, each)
        ]

    async def read_log(self, service: str, name: str, container: str) -> str | None:
        return self.records[(service, name)][1].get(container)


def record(name: str, service: str, logs: dict[str, str], missing: dict[str, str] | None = None):
    body = {
        "job": name,
        "service": service,
        "logs": dict.fromkeys(logs, "kept"),
        "logs_missing": missing or {},
    }
    return (service, name), (body, logs)


def test_the_run_container_unless_another_or_every_one_is_asked_for() -> None:
    kept = ["stage-in", "run", "stage-out"]
    assert chosen_containers(None, every=False, available=kept) == ["run"]
    assert chosen_containers(None, every=True, available=kept) == kept
    assert chosen_containers("stage-out", every=True, available=kept) == ["stage-out"]


async def test_a_job_s_newest_pod_is_read_while_it_has_a_log() -> None:
    admin = FakeAdmin(
        {"a": job("a", "upper")},
        pods={"a": ["a-old", "a-new"]},
        logs={("a-new", "run"): "one\ntwo\n", ("a-old", "run"): "before"},
    )
    store = FakeStore(dict([record("a", "upper", {"run": "from the record"})]))
    found = await read_logs(admin, store, "a")  # type: ignore[arg-type]
    assert (found.texts, found.record, found.asked) == ({"run": "one\ntwo\n"}, None, ["run"])
    assert admin.asked == [("a-new", "run")]
    every = await read_logs(admin, store, "a", every=True, tail_lines=1)  # type: ignore[arg-type]
    assert every.texts == {"stage-in": None, "run": "two", "stage-out": None}


async def test_the_record_is_read_when_the_job_or_its_pods_are_gone_or_have_no_log_yet() -> None:
    store = FakeStore(dict([record("a", "upper", {"stage-in": "in\n", "run": "1\n2\n3\n"})]))
    gone = await read_logs(FakeAdmin({}), store, "a", tail_lines=2)  # type: ignore[arg-type]
    assert (gone.job, gone.texts, gone.record is not None) == (None, {"run": "2\n3\n"}, True)
    every = await read_logs(FakeAdmin({}), store, "a", every=True)  # type: ignore[arg-type]
    assert every.texts == {"stage-in": "in\n", "run": "1\n2\n3\n"}  # the containers the record keeps
    unstarted = FakeAdmin({"a": job("a", "upper")}, pods={"a": ["a-1"]})
    fallback = await read_logs(unstarted, store, "a")  # type: ignore[arg-type]
    assert (fallback.job is not None, fallback.asked, fallback.texts) == (True, ["run"], {"run": "1\n2\n3\n"})


async def test_nothing_found_says_whether_the_job_exists_and_what_its_record_keeps() -> None:
    pending = await read_logs(FakeAdmin({"a": job("a", "upper")}), FakeStore({}), "a")  # type: ignore[arg-type]
    assert (pending.found, pending.job is not None, pending.record) == (False, True, None)
    nowhere = await read_logs(FakeAdmin({}), FakeStore({}), "a")  # type: ignore[arg-type]
    assert (nowhere.found, nowhere.job, nowhere.record, nowhere.texts) == (False, None, None, {})
    store = FakeStore(dict([record("a", "upper", {"stage-out": "{}"}, {"run": "pod gone"})]))
    unkept = await read_logs(FakeAdmin({}), store, "a")  # type: ignore[arg-type]
    assert (unkept.found, unkept.texts) == (False, {"run": None})
    assert unkept.record is not None
    assert unkept.record["logs_missing"] == {"run": "pod gone"}


async def test_with_a_service_another_service_s_job_and_record_are_not_looked_at() -> None:
    admin = FakeAdmin({"a": job("a", "other")}, pods={"a": ["a-1"]}, logs={("a-1", "run"): "other's"})
    store = FakeStore(dict([record("a", "other", {"run": "other's record"})]))
    found = await read_logs(admin, store, "a", service="upper")  # type: ignore[arg-type]
    assert (found.found, found.job, found.record) == (False, None, None)
    assert admin.asked == []
    assert (await read_logs(admin, store, "a", service="other")).texts == {"run": "other's"}  # type: ignore[arg-type]

"""The pure planning behind `bucketrun services apply|list|delete`: desired vs observed -> changes."""

from __future__ import annotations

import pytest

from bucketrun.admin.inventory import inventory
from bucketrun.admin.plan import (
    Action,
    BucketView,
    Change,
    ConfigMapView,
    Desired,
    Observed,
    PlanError,
    desired_state,
    merge_rules,
    plan_apply,
    plan_delete,
    service_rules,
    summary,
)
from dispatcher.adapters.s3.notifications import (
    NotificationRule,
    arns_match,
    check_filter_value,
    rule_id,
    rule_owner,
)
from dispatcher.fdl import ServiceDefinition, load_services_text
from dispatcher.rendering.render import JobRenderer

ARN = "arn:minio:sqs::_:amqp"
FOREIGN = NotificationRule(
    "queue", "arn:minio:sqs::OTHER:webhook", ("s3:ObjectRemoved:*",), "in/", "", "audit"
)
FOREIGN_TOPIC = NotificationRule("topic", "arn:minio:sns::x:kafka", ("s3:ObjectCreated:Put",), rule_id=None)

FDL = """
functions:
  oscar:
  - c:
      name: {name}
      image: alpine:3.20
      script: "echo hi"
      input:
      - storage_provider: minio
        path: {bucket}/in
{filters}
      output:
      - storage_provider: minio
        path: {bucket}-out/results/deep
"""


def service(name: str = "upper", bucket: str = "photos", filters: str = "") -> ServiceDefinition:
    text = FDL.format(name=name, bucket=bucket, filters=filters)
    return load_services_text(text, source="t.yaml", base_dir=None).services[0]


def desired(*services: ServiceDefinition, config_maps: bool = False, notifications: bool = True) -> Desired:
    renderer = JobRenderer()
    return desired_state(
        services,
        arn=ARN,
        records_bucket="bucketrun-records",
        config_maps=[renderer.render_config_map(s) for s in services] if config_maps else None,
        notifications=notifications,
    )


def nothing() -> Observed:
    return Observed({}, None)


def converged(want: Desired, *, extra_rules: tuple[NotificationRule, ...] = ()) -> Observed:
    """What the store and cluster hold once `want` was applied (plus others' rules)."""
    buckets = {}
    for bucket in {*want.buckets, *(want.rules or {})}:
        markers = frozenset(key for where, key in want.markers if where == bucket)
        buckets[bucket] = BucketView(True, markers, (*extra_rules, *(want.rules or {}).get(bucket, ())))
    maps = None
    if want.config_maps is not None:
        maps = {
            doc["metadata"]["name"]: ConfigMapView(doc["metadata"]["name"], "upper", doc["data"])
            for doc in want.config_maps
        }
    return Observed(buckets, maps)


def writes(changes: tuple[Change, ...]) -> list[str]:
    return [change.text for change in changes if change.is_write]


# -- notification rules -------------------------------------------------------------------------------


def test_rules_have_folder_prefix_suffix_per_filter_and_stable_ids() -> None:
    svc = service(filters='        prefix: ["a", "b"]\n        suffix: [".jpg"]')
    rules = service_rules(svc, ARN)
    assert [(bucket, r.prefix, r.suffix, r.rule_id) for bucket, r in rules] == [
        ("photos", "in/a", ".jpg", "bucketrun-upper-0"),
        ("photos", "in/b", ".jpg", "bucketrun-upper-1"),
    ]
    assert all(r.events == ("s3:ObjectCreated:*",) and r.arn == ARN and r.kind == "queue" for _, r in rules)
    assert service_rules(svc, ARN) == rules  # deterministic


def test_rule_ids_parse_back_to_their_service_and_nothing_else() -> None:
    assert rule_owner(rule_id("a-b", 3)) == "a-b"
    assert rule_owner("bucketrun-upper-0") == "upper"
    for foreign in (
        None,
        "audit",
        "bucketrun-",
        "bucketrun-upper",
        "bucketrun-upper-x",
        "bucketrun-Up-0",
        "x-upper-0",
    ):
        assert rule_owner(foreign) is None, foreign


def test_arns_match_when_minio_filled_in_its_region() -> None:
    assert arns_match("arn:minio:sqs::_:amqp", "arn:minio:sqs:us-east-1:_:amqp")
    assert not arns_match("arn:minio:sqs::_:amqp", "arn:minio:sqs::PRIMARY:amqp")
    assert not arns_match("arn:minio:sqs:eu-west-1:_:amqp", "arn:minio:sqs:us-east-1:_:amqp")


@pytest.mark.parametrize("value", ["in/../x", "in/./", "a\\b", "x" * 1025, "in/\x00"])
def test_filter_values_minio_refuses_are_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match="notification filter"):
        check_filter_value(value)


def test_hostile_filter_in_a_definition_is_refused_before_any_request() -> None:
    svc = service(filters='        suffix: ["a\\\\b"]')
    with pytest.raises(PlanError, match=r"service 'upper' input 'photos': notification filter"):
        desired(svc)


def test_too_many_filter_combinations_are_refused() -> None:
    many = ", ".join(f'"p{i}"' for i in range(11))
    suffixes = ", ".join(f'".s{i}"' for i in range(10))
    svc = service(filters=f"        prefix: [{many}]\n        suffix: [{suffixes}]")
    with pytest.raises(PlanError, match="needs 110 notification entries"):
        desired(svc)


# -- apply ----------------------------------------------------------------------------------------------


def test_apply_on_an_empty_store_creates_buckets_markers_configmap_and_wiring() -> None:
    changes = plan_apply(desired(service(), config_maps=True), Observed({}, {}))
    texts = writes(changes)
    assert texts[:3] == [
        "create bucket bucketrun-records",
        "create bucket photos",
        "create bucket photos-out",
    ]
    assert "create marker photos/in/" in texts
    assert "create marker photos-out/results/deep/" in texts
    assert any(text.startswith("create configmap bucketrun-upper-") for text in texts)
    (wiring,) = [c for c in changes if c.action is Action.SET_NOTIFICATION]
    assert wiring.target == "photos"
    assert wiring.text.startswith("update notification photos: add bucketrun-upper-0")
    assert [r.prefix for r in wiring.rules] == ["in/"]


def test_second_apply_reports_no_changes() -> None:
    want = desired(service(), config_maps=True)
    changes = plan_apply(want, converged(want))
    assert writes(changes) == []
    assert summary(changes, dry_run=False).startswith("no changes")
    assert any(
        c.text.startswith("configmap bucketrun-upper-") and c.text.endswith("unchanged") for c in changes
    )


def test_merge_keeps_foreign_entries_and_other_services_entries() -> None:
    other = NotificationRule("queue", ARN, ("s3:ObjectCreated:*",), "x/", "", "bucketrun-other-0")
    stale = NotificationRule("queue", ARN, ("s3:ObjectCreated:*",), "old/", "", "bucketrun-upper-7")
    observed = Observed(
        {"photos": BucketView(True, frozenset({"in/"}), (FOREIGN, other, stale, FOREIGN_TOPIC))}, None
    )
    changes = plan_apply(desired(service()), observed)
    (wiring,) = [c for c in changes if c.action is Action.SET_NOTIFICATION]
    assert wiring.rules[:3] == (FOREIGN, other, FOREIGN_TOPIC)
    assert [r.rule_id for r in wiring.rules[3:]] == ["bucketrun-upper-0"]
    assert "remove bucketrun-upper-7" in wiring.text
    assert "add bucketrun-upper-0" in wiring.text


def test_foreign_entries_alone_never_cause_a_write() -> None:
    want = desired(service())
    assert writes(plan_apply(want, converged(want, extra_rules=(FOREIGN, FOREIGN_TOPIC)))) == []


def test_changed_filters_replace_our_entry_and_say_what_changed() -> None:
    want = desired(service(filters='        suffix: [".png"]'))
    before = converged(desired(service(filters='        suffix: [".jpg"]')), extra_rules=(FOREIGN,))
    (wiring,) = [c for c in plan_apply(want, before) if c.action is Action.SET_NOTIFICATION]
    assert "replace bucketrun-upper-0 (suffix '.jpg' -> '.png')" in wiring.text
    assert wiring.rules[0] == FOREIGN


def test_region_filled_in_by_minio_is_not_drift() -> None:
    want = desired(service())
    stored = tuple(
        NotificationRule(r.kind, "arn:minio:sqs:us-east-1:_:amqp", r.events, r.prefix, r.suffix, r.rule_id)
        for r in (want.rules or {})["photos"]
    )
    observed = converged(want)
    buckets = dict(observed.buckets)
    buckets["photos"] = BucketView(True, frozenset({"in/"}), stored)
    assert writes(plan_apply(want, Observed(buckets, None))) == []


def test_changed_configmap_data_is_replaced() -> None:
    want = desired(service(), config_maps=True)
    observed = converged(want)
    assert observed.config_maps is not None
    name = next(iter(observed.config_maps))
    maps = {name: ConfigMapView(name, "upper", {"script.sh": "tampered"})}
    changes = plan_apply(want, Observed(observed.buckets, maps))
    assert writes(changes) == [
        f"replace configmap {name} (its data differs from what the dispatcher renders)"
    ]


def test_local_executor_and_skip_notifications_are_notes_not_changes() -> None:
    want = desired(service(), notifications=False)
    changes = plan_apply(want, converged(want))
    notes = [c.text for c in changes if c.action is Action.NOTE]
    assert any("configmaps skipped" in note for note in notes)
    assert "notifications skipped (--skip-notifications)" in notes
    assert writes(changes) == []


def test_a_store_that_reports_no_configuration_is_skipped_with_a_note() -> None:
    want = desired(service())
    observed = Observed({"photos": BucketView(True, frozenset({"in/"}), None)}, None)
    changes = plan_apply(want, observed)
    assert not [c for c in changes if c.action is Action.SET_NOTIFICATION]
    assert "notification photos skipped: the store reports no configuration" in [c.text for c in changes]


def test_paths_on_other_providers_are_left_out_with_a_note() -> None:
    text = (
        FDL.format(name="upper", bucket="photos", filters="")
        + """      storage_providers:
        s3:
          aws:
            access_key: AK
            secret_key: SK
"""
    )
    text = text.replace(
        "path: photos-out/results/deep",
        "path: photos-out/results/deep\n      - storage_provider: s3.aws\n        path: far/away",
    )
    svc = load_services_text(text, source="t.yaml", base_dir=None).services[0]
    want = desired(svc)
    assert "far" not in want.buckets
    assert any("skip upper output s3.aws:far/away" in note for note in want.notes)


# -- delete ---------------------------------------------------------------------------------------------


def test_delete_removes_only_our_entries_and_configmaps() -> None:
    ours = NotificationRule("queue", ARN, ("s3:ObjectCreated:*",), "in/", "", "bucketrun-upper-0")
    other = NotificationRule("queue", ARN, ("s3:ObjectCreated:*",), "x/", "", "bucketrun-other-0")
    observed = Observed(
        {
            "photos": BucketView(True, rules=(FOREIGN, ours, other)),
            "quiet": BucketView(True, rules=(FOREIGN,)),
            "odd": BucketView(True, rules=None),
        },
        {
            "bucketrun-upper-1": ConfigMapView("bucketrun-upper-1", "upper"),
            "bucketrun-other-1": ConfigMapView("bucketrun-other-1", "other"),
        },
    )
    changes = plan_delete(["upper"], observed)
    assert writes(changes) == [
        "update notification photos: remove bucketrun-upper-0",
        "delete configmap bucketrun-upper-1",
    ]
    (wiring,) = [c for c in changes if c.action is Action.SET_NOTIFICATION]
    assert wiring.rules == (FOREIGN, other)


def test_delete_of_an_unknown_service_says_so_and_writes_nothing() -> None:
    changes = plan_delete(["ghost"], Observed({"photos": BucketView(True, rules=(FOREIGN,))}, {}))
    assert writes(changes) == []
    assert "service ghost: nothing of bucketrun's found" in [c.text for c in changes]


@pytest.mark.parametrize("name", ["Upper", "a;rm -rf /", "../x", "", "x" * 40, "bucketrun-x-0\n"])
def test_delete_refuses_hostile_names(name: str) -> None:
    with pytest.raises(PlanError, match="service name"):
        plan_delete([name], nothing())


def test_merge_rules_is_idempotent() -> None:
    want = (desired(service()).rules or {})["photos"]
    once = merge_rules((FOREIGN, *want), want, ["upper"])
    assert merge_rules(once, want, ["upper"]) == once == (FOREIGN, *want)


# -- list -----------------------------------------------------------------------------------------------


def test_inventory_reports_wired_drifted_and_unknown_services() -> None:
    want = desired(service(), service("gray", "grays"), config_maps=True)
    observed = converged(want)
    buckets = dict(observed.buckets)
    buckets["grays"] = BucketView(True, frozenset({"in/"}), ())  # gray's wiring is gone
    buckets["legacy"] = BucketView(
        True, rules=(NotificationRule("queue", ARN, ("s3:ObjectCreated:*",), rule_id="bucketrun-old-0"),)
    )
    statuses = {s.name: s for s in inventory(Observed(buckets, observed.config_maps), want)}
    assert statuses["upper"].notifications == "wired"
    assert statuses["upper"].buckets == ("photos",)
    assert statuses["gray"].notifications == "missing"
    assert statuses["gray"].drift == (
        "grays: add bucketrun-gray-0 (events s3:ObjectCreated:*, prefix 'in/')",
    )
    assert statuses["old"].in_fdl is False
    assert "(not in the given FDL)" in statuses["old"].line()
    assert inventory(Observed(buckets, None), None)[0].config_map == "not checked"


def test_apply_creates_the_mounts_bucket_and_folder_as_oscar_does_but_no_rule_for_it() -> None:
    text = FDL.format(name="weights", bucket="photos", filters="").replace(
        "      output:", "      mount: {storage_provider: minio, path: models/yolo}\n      output:"
    )
    svc = load_services_text(text, source="t.yaml", base_dir=None).services[0]
    want = desired(svc)
    assert "models" in want.buckets
    assert ("models", "yolo/") in want.markers
    assert "models" not in (want.rules or {})
    assert "create bucket models" in writes(plan_apply(want, nothing()))

"""bucketrun's lifecycle rule goes in, out or is replaced; every other rule stays exactly as the store
sent it, elements the SDK does not model included (its LifecycleConfig drops ObjectSizeGreaterThan,
which would widen someone's rule to objects of every size, and cannot even read a rule whose only
action is MinIO's DelMarkerExpiration)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from dispatcher.adapters.s3.lifecycle import (
    ExpirationRule,
    LifecycleDocumentError,
    expiration_rule,
    rules,
    with_rule,
    without_rule,
)

OURS = ExpirationRule("bucketrun-records-retention", "records/", 30)
SIZED = (
    "<Rule><ID>big-tmp</ID><Status>Enabled</Status><Filter><And><ObjectSizeGreaterThan>1024"
    "</ObjectSizeGreaterThan><Prefix>tmp/</Prefix></And></Filter><Expiration><Days>3</Days></Expiration></Rule>"
)
MARKERS = (
    "<Rule><ID>markers</ID><Status>Enabled</Status><Filter><Prefix>old/</Prefix></Filter>"
    "<DelMarkerExpiration><Days>2</Days></DelMarkerExpiration></Rule>"
)


def document(*rule_xml: str, namespace: str = "") -> bytes:
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return f"<LifecycleConfiguration{xmlns}>{''.join(rule_xml)}</LifecycleConfiguration>".encode()


def texts(doc: bytes | None) -> list[str]:
    return [ET.tostring(rule, encoding="unicode") for rule in rules(doc)]


def test_the_rule_is_appended_and_every_other_rule_kept_element_for_element() -> None:
    before = document(SIZED, MARKERS)
    after = with_rule(before, OURS)
    assert after is not None
    assert texts(after) == [SIZED, MARKERS, ET.tostring(OURS.element(), encoding="unicode")]
    assert expiration_rule(after, OURS.rule_id) == OURS


def test_a_configuration_holding_the_same_rule_is_not_rewritten_whatever_its_element_order() -> None:
    # MinIO answers with Status before Filter, as in this document.
    stored = (
        "<Rule><ID>bucketrun-records-retention</ID><Status>Enabled</Status><Filter><Prefix>records/</Prefix>"
        "</Filter><Expiration><Days>30</Days></Expiration><NoncurrentVersionExpiration><NoncurrentDays>1"
        "</NoncurrentDays></NoncurrentVersionExpiration></Rule>"
    )
    assert with_rule(document(SIZED, stored), OURS) is None


def test_another_retention_replaces_the_rule_in_its_place() -> None:
    first = with_rule(document(SIZED), ExpirationRule(OURS.rule_id, "records/", 7))
    assert first is not None
    second = with_rule(first + b"", OURS)
    assert second is not None
    assert [rule.findtext("ID") for rule in rules(second)] == ["big-tmp", OURS.rule_id]
    assert expiration_rule(second, OURS.rule_id) == OURS
    assert texts(second)[0] == SIZED


def test_a_rule_of_that_id_that_is_not_an_expiration_rule_is_replaced() -> None:
    theirs = (
        "<Rule><ID>bucketrun-records-retention</ID><Status>Disabled</Status><Filter><Prefix>records/</Prefix>"
        "</Filter><Expiration><Days>30</Days></Expiration><NoncurrentVersionExpiration><NoncurrentDays>1"
        "</NoncurrentDays></NoncurrentVersionExpiration></Rule>"
    )
    assert expiration_rule(document(theirs), OURS.rule_id) is None
    assert expiration_rule(with_rule(document(theirs), OURS), OURS.rule_id) == OURS


def test_removing_keeps_the_others_and_an_only_rule_leaves_no_configuration() -> None:
    both = with_rule(document(MARKERS), OURS)
    changed, left = without_rule(both, OURS.rule_id)
    assert changed
    assert texts(left) == [MARKERS]
    assert without_rule(with_rule(None, OURS), OURS.rule_id) == (True, None)
    assert without_rule(document(MARKERS), OURS.rule_id) == (False, document(MARKERS))
    assert without_rule(None, OURS.rule_id) == (False, None)


def test_s3_s_namespace_is_read_and_the_document_is_written_without_one() -> None:
    aws = document(SIZED, namespace="http://s3.amazonaws.com/doc/2006-03-01/")
    merged = with_rule(aws, OURS)
    assert merged is not None
    assert b"xmlns" not in merged
    assert texts(merged)[0] == SIZED


@pytest.mark.parametrize("body", [b"<not xml", b"<ReplicationConfiguration/>"])
def test_a_document_that_is_no_lifecycle_configuration_is_an_error(body: bytes) -> None:
    with pytest.raises(LifecycleDocumentError):
        with_rule(body, OURS)

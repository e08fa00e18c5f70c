"""A bucket's lifecycle configuration with one rule of bucketrun's added, replaced or removed, and every
other rule kept as the store returned it (pure: the requests are ``storage.Storage``'s).

The SDK's ``LifecycleConfig`` models only part of S3's rule elements (no ``ObjectSizeGreaterThan``,
``NewerNoncurrentVersions`` in transitions, nor MinIO's own extensions): read through it and written
back, other people's rules would lose what it does not model. So the configuration is handled as XML:
bucketrun's rule (found by its ``ID``) is built here, and every other ``Rule`` element is written back
with all its children, in its place. Namespaces are dropped on reading (MinIO sends none, AWS sends
S3's), and the document is written without one, as the SDK itself writes it.
"""

from __future__ import annotations

# The documents are the store's own answers; expat refuses entity expansion bombs.
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

_ROOT: Final = "LifecycleConfiguration"


@dataclass(frozen=True, slots=True)
class ExpirationRule:
    """A lifecycle rule that deletes the objects under ``prefix`` ``days`` after they were written, and
    their noncurrent versions (versioned buckets) ``noncurrent_days`` after they stopped being current."""

    rule_id: str
    prefix: str
    days: int
    noncurrent_days: int = 1

    def element(self) -> ET.Element:
        """The ``Rule`` element of this rule."""
        rule = ET.Element("Rule")
        ET.SubElement(rule, "ID").text = self.rule_id
        ET.SubElement(ET.SubElement(rule, "Filter"), "Prefix").text = self.prefix
        ET.SubElement(rule, "Status").text = "Enabled"
        ET.SubElement(ET.SubElement(rule, "Expiration"), "Days").text = str(self.days)
        noncurrent = ET.SubElement(rule, "NoncurrentVersionExpiration")
        ET.SubElement(noncurrent, "NoncurrentDays").text = str(self.noncurrent_days)
        return rule


class LifecycleDocumentError(ValueError):
    """The store's lifecycle configuration is not a ``LifecycleConfiguration`` document."""


def rules(document: bytes | None) -> list[ET.Element]:
    """The ``Rule`` elements of *document* (None: the bucket has no configuration), namespaces dropped."""
    if document is None:
        return []
    try:
        root = ET.fromstring(document)  # noqa: S314 - see the import
    except ET.ParseError as error:
        raise LifecycleDocumentError(f"unreadable lifecycle configuration: {error}") from error
    for element in root.iter():
        element.tag = _local(element.tag)
    if root.tag != _ROOT:
        raise LifecycleDocumentError(f"a lifecycle configuration must be a {_ROOT}, not {root.tag}")
    return [child for child in root if child.tag == "Rule"]


def rule_id(rule: ET.Element) -> str | None:
    """The ``ID`` of a ``Rule`` element (None without one)."""
    found = rule.find("ID")
    return found.text if found is not None else None


def expiration_rule(document: bytes | None, wanted: str) -> ExpirationRule | None:
    """The rule with ID *wanted* as an ``ExpirationRule``, or None when there is no such rule or it is
    not one this module would write (another filter, transitions, disabled)."""
    for rule in rules(document):
        if rule_id(rule) == wanted:
            return _as_expiration(rule)
    return None


def with_rule(document: bytes | None, rule: ExpirationRule) -> bytes | None:
    """*document* with *rule* in place of any rule of its ID (appended if there is none), every other
    rule kept; None when *document* already holds exactly *rule*."""
    kept = rules(document)
    if any(rule_id(each) == rule.rule_id and _as_expiration(each) == rule for each in kept):
        return None
    placed = [rule.element() if rule_id(each) == rule.rule_id else each for each in kept]
    if not any(rule_id(each) == rule.rule_id for each in kept):
        placed.append(rule.element())
    return _document(placed)


def without_rule(document: bytes | None, wanted: str) -> tuple[bool, bytes | None]:
    """(changed, the document without the rule of ID *wanted*); the document is None when no rule is
    left (the whole configuration is to be deleted: S3 refuses an empty one)."""
    kept = rules(document)
    left = [each for each in kept if rule_id(each) != wanted]
    if len(left) == len(kept):
        return False, document
    return True, _document(left) if left else None


def _as_expiration(rule: ET.Element) -> ExpirationRule | None:
    shape = {child.tag: [grandchild.tag for grandchild in child] for child in rule}
    if len(rule) != len(shape) or shape != {
        "ID": [],
        "Filter": ["Prefix"],
        "Status": [],
        "Expiration": ["Days"],
        "NoncurrentVersionExpiration": ["NoncurrentDays"],
    }:
        return None
    if rule.findtext("Status") != "Enabled":
        return None
    try:
        return ExpirationRule(
            rule_id(rule) or "",
            rule.findtext("Filter/Prefix") or "",
            int(rule.findtext("Expiration/Days") or ""),
            int(rule.findtext("NoncurrentVersionExpiration/NoncurrentDays") or ""),
        )
    except ValueError:
        return None


def _document(placed: list[ET.Element]) -> bytes:
    root = ET.Element(_ROOT)
    root.extend(placed)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=False))


def _local(tag: str) -> str:
    """``{namespace}Name`` → ``Name``."""
    return tag.rsplit("}", 1)[-1]

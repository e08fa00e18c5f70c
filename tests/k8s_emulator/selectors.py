"""Label and field selectors: parsed once per request, then matched against stored objects (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.k8s_emulator.errors import bad_request
from tests.k8s_emulator.names import label_key_errors, label_value_errors

_EQUALITY = re.compile(r"(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[^\s!=<>(),]*)")
_SET = re.compile(r"(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")

# Fields each resource can be selected by besides metadata.name and metadata.namespace: only those a
# client of the emulator selects by (the apiserver knows more, e.g. spec.nodeName; those answer 400 here).
_EXTRA_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({"status.phase"}),
    # The watcher's refused-Job sweep: FailedCreate Events of Jobs, then one Job's Events by UID.
    "events": frozenset({"involvedObject.kind", "involvedObject.uid", "reason"}),
}


def _as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: key, operator and values."""

    key: str
    operator: str
    """One of "=", "!=", "in", "notin", "exists", "!", ">", "<"."""
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when *labels* satisfy this clause (absent keys satisfy "!=" and "notin", as in Kubernetes)."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in {"exists", "!"}:
            return present == (self.operator == "exists")
        if self.operator in {"=", "in"}:
            return present and value in self.values
        if self.operator in {"!=", "notin"}:
            return not present or value not in self.values
        number = _as_int(value)
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == ">" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    """A parsed `labelSelector`: every requirement must match."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """True when the object's labels satisfy every requirement."""
        if not self.requirements:
            return True
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses ("a in (x,y),b" -> ["a in (x,y)", "b"])."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _checked_key(key: str, clause: str) -> str:
    errors = label_key_errors(key)
    if errors:
        raise bad_request(f'unable to parse requirement: key "{key}" in "{clause}": {"; ".join(errors)}')
    return key


def _checked_value(value: str, clause: str) -> str:
    errors = label_value_errors(value)
    if errors:
        raise bad_request(f'unable to parse requirement: value "{value}" in "{clause}": {"; ".join(errors)}')
    return value


def _parse_requirement(clause: str) -> Requirement:
    if clause.startswith("!"):
        return Requirement(_checked_key(clause[1:].strip(), clause), "!")
    if match := _SET.fullmatch(clause):
        values = tuple(_checked_value(v.strip(), clause) for v in match["values"].split(","))
        return Requirement(_checked_key(match["key"], clause), match["op"], values)
    if match := _EQUALITY.fullmatch(clause):
        operator = "=" if match["op"] == "==" else match["op"]
        value = _checked_value(match["value"], clause)
        if operator in {">", "<"} and not re.fullmatch(r"-?\d+", value):
            raise bad_request(
                f'unable to parse requirement: "{clause}": for ">" and "<" the value must be an integer'
            )
        return Requirement(_checked_key(match["key"], clause), operator, (value,))
    if re.fullmatch(r"[^\s!=<>(),]+", clause):
        return Requirement(_checked_key(clause, clause), "exists")
    raise bad_request(f'unable to parse requirement: found "{clause}", expected a label selector clause')


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a `labelSelector` query value (=, ==, !=, in, notin, exists, !key, >, <); 400 if malformed."""
    if not text or not text.strip():
        return LabelSelector()
    return LabelSelector(tuple(_parse_requirement(part.strip()) for part in _split_top_level(text)))


@dataclass(frozen=True)
class FieldSelector:
    """A parsed `fieldSelector`: (field, operator, value) triples that must all hold."""

    terms: tuple[tuple[str, str, str], ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """True when every term holds for *obj* (a missing field reads as "")."""
        return all(
            (field_value(obj, path) == value) == (operator == "=") for path, operator, value in self.terms
        )


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of the dotted *path* in *obj*, "" when absent (as Kubernetes' field sets do)."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def parse_field_selector(text: str | None, plural: str) -> FieldSelector:
    """Parse a `fieldSelector` for resource *plural*; 400 for malformed terms or unsupported fields."""
    if not text or not text.strip():
        return FieldSelector()
    allowed = {"metadata.name", "metadata.namespace"} | _EXTRA_FIELDS.get(plural, frozenset())
    terms = []
    for raw in text.split(","):
        term = raw.strip()
        match = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(.*)", term)
        if match is None:
            raise bad_request(f'invalid selector: "{text}"; can\'t understand "{term}"')
        path, operator, value = match[1], match[2], match[3].strip()
        if path not in allowed:
            raise bad_request(f"field label not supported: {path}")
        terms.append((path, "!=" if operator == "!=" else "=", value))
    return FieldSelector(tuple(terms))


@dataclass(frozen=True)
class Selection:
    """Which objects a list/watch/deletecollection wants: namespace (None = all) and both selectors."""

    namespace: str | None
    labels: LabelSelector = LabelSelector()
    fields: FieldSelector = FieldSelector()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """True when *obj* is in the namespace and satisfies both selectors."""
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj)


def selection_from_query(query: Mapping[str, str], plural: str, namespace: str | None) -> Selection:
    """The Selection a request's query asks for."""
    return Selection(
        namespace,
        parse_label_selector(query.get("labelSelector")),
        parse_field_selector(query.get("fieldSelector"), plural),
    )

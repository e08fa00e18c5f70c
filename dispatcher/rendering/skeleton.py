"""Parsed template skeletons: parse a template's YAML once per shape, not once per event.

Parsing the rendered YAML text back was three quarters of rendering a Job (and the dispatcher's
largest CPU cost per event). It need not be repeated: every interpolated value goes through `tojson`
(enforced, see `template_env`), whose output YAML reads back as exactly that value. So a render in
*slot mode* writes, instead of each value, a unique placeholder string (``"<prefix><n>"``) and keeps
the value aside. The text that comes out depends on the template and its control flow (``{% if %}``,
loops) but not on the values: events of one service version give the same text, and the parsed
document of that text, with each placeholder node replaced by its value, is the document the
ordinary render would have parsed.

The text itself is the cache key, so nothing has to know which variables steer the control flow. A
skeleton is only used when every placeholder is a whole node (not part of a longer scalar, not a
mapping key, not in a comment) and the rest is plain JSON-like data; otherwise the caller falls back
to the ordinary render. Values are copied as JSON would read them (tuples become lists), and only
types whose `tojson` text YAML reads back unchanged qualify (str, int, bool, None, lists, str-keyed
dicts): a float, or a str subclass, makes that one render take the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

_SCALARS: Final = (str, int, float, bool, type(None))


class NotPlainError(ValueError):
    """A value whose YAML reading is not obviously itself: render it the ordinary way."""


@dataclass(frozen=True, slots=True)
class Slot:
    """Where the value of the *index*-th `tojson` call goes."""

    index: int


@dataclass(frozen=True, slots=True)
class Skeleton:
    """A parsed document with `Slot` markers where the values go; `fill` makes a fresh document."""

    root: dict[str, Any]
    slots: int

    def fill(self, values: Sequence[Any]) -> dict[str, Any]:
        """A new document: the skeleton's structure copied, each slot replaced by its recorded value.

        *values* are what one slot-mode render recorded: fresh `plain_copy` copies, used as they are
        (so fill each list once), or `NOT_PLAIN`, which raises ``NotPlainError`` (the caller then
        renders the ordinary way).
        """
        if len(values) != self.slots:
            raise NotPlainError(f"the render produced {len(values)} values for {self.slots} slots")
        filled: dict[str, Any] = _fill(self.root, values)
        return filled


def build_skeleton(document: Any, prefix: str, slots: int) -> Skeleton | None:
    """The skeleton of *document* (parsed from a slot-mode render with *slots* placeholders), or None
    when it cannot stand in for parsing: a placeholder that is not a whole node, one missing or seen
    twice, or data that is not plain JSON-like (a YAML timestamp, set or binary)."""
    if not isinstance(document, dict):
        return None
    found: list[int] = []
    try:
        root = _mark(document, prefix, found)
    except NotPlainError:
        return None
    if sorted(found) != list(range(slots)):
        return None
    return Skeleton(root, slots)


def _mark(node: Any, prefix: str, found: list[int]) -> Any:
    kind = type(node)
    if kind is dict:
        marked = {}
        for key, value in node.items():
            if type(key) is not str or prefix in key:
                raise NotPlainError("a mapping key is not a plain string, or holds a placeholder")
            marked[key] = _mark(value, prefix, found)
        return marked
    if kind is list:
        return [_mark(item, prefix, found) for item in node]
    if kind is str:
        if prefix not in node:
            return node
        index = node[len(prefix) :]
        if not node.startswith(prefix) or not index.isdigit() or index != str(int(index)):
            raise NotPlainError("a placeholder is part of a longer scalar")
        found.append(int(index))
        return Slot(int(index))
    if kind in _SCALARS:
        return node
    raise NotPlainError(f"the template parses to a {kind.__name__}, not plain data")


def _fill(node: Any, values: Sequence[Any]) -> Any:
    kind = type(node)
    if kind is dict:
        return {key: _fill(value, values) for key, value in node.items()}
    if kind is list:
        return [_fill(item, values) for item in node]
    if kind is Slot:
        value = values[node.index]
        if value is NOT_PLAIN:
            raise NotPlainError(f"the value of slot {node.index} is not plain JSON-like data")
        return value
    return node  # an immutable scalar of the skeleton


NOT_PLAIN: Final = object()
"""Recorded in place of a value that `plain_copy` refused: a render holding one takes the ordinary path."""


def plain_copy(value: Any, surrogates: Callable[[str], object]) -> Any:
    """*value* as YAML reads back its `tojson` text: a fresh copy, tuples as lists.

    ``NotPlainError`` for anything else: floats (``1e+20`` is a string to YAML 1.1), subclasses of
    str/int/dict (JSON writes their base value, YAML reads back the base type), non-string keys.
    *surrogates* is called on every non-ASCII string (keys too), to refuse what `tojson` refuses.
    """
    kind = type(value)
    if kind is str:
        if not value.isascii():
            surrogates(value)
        return value
    if kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str:
                raise NotPlainError(f"mapping key {key!r:.40} is not a string")
            if not key.isascii():
                surrogates(key)
            # Strings are most leaves (labels, env values): taken here without a call per leaf.
            if type(item) is str:
                if not item.isascii():
                    surrogates(item)
                copied[key] = item
            else:
                copied[key] = plain_copy(item, surrogates)
        return copied
    if kind is list or kind is tuple:
        return [plain_copy(item, surrogates) for item in value]
    raise NotPlainError(f"{kind.__name__} value {value!r:.40} is not plain JSON-like data")


def identical(left: Any, right: Any) -> bool:
    """Equal and of the same types all the way down (``==`` alone takes ``1`` for ``True``)."""
    if type(left) is not type(right):
        return False
    if type(left) is dict:
        return list(left) == list(right) and all(identical(left[key], right[key]) for key in left)
    if type(left) is list:
        return len(left) == len(right) and all(map(identical, left, right))
    return bool(left == right)

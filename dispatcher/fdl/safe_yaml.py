"""YAML loading for service definitions: ``yaml.safe_load`` with bounds, and the YAML 1.2 core schema.

Why each guard:

* **Size** (``MAX_DOCUMENT_BYTES``, 1 MiB): an FDL is a few KiB; the bound caps parse time and memory
  before the parser even starts.
* **Aliases** (``MAX_ALIASES``): PyYAML shares the node an alias points to, so loading a "billion laughs"
  document is cheap -- but everything that walks the result afterwards (validation, hashing, JSON) pays
  for the full expansion. Real FDLs use no aliases; a handful is allowed for hand-written files.
* **Expanded size** (``MAX_EXPANDED_NODES``): counts every node as often as aliases repeat it, so even a
  few nested aliases cannot make a document that is small to read and huge to walk.
* **Recursive aliases** (an alias inside the node it names) would make the result an infinite structure;
  refused.
* **Depth** (``MAX_DEPTH``): the composer recurses per nesting level; bounding it keeps a ``[[[[...``
  document from exhausting the interpreter stack.
* **Duplicate keys** are refused: PyYAML silently keeps the last, so a second ``input:`` would
  replace the first without anyone noticing.

The schema is YAML 1.2 core (as OSCAR's Go parser reads FDLs), not PyYAML's YAML 1.1: ``yes``/``no``/
``on``/``off`` stay strings, dates stay strings, ``010`` is ten. Integers and floats remember their
source text (``YamlInt.text``) so that a value such as ``VERSION: 1.10`` can become the string
``"1.10"`` when a string was expected, as Go's decoder would give. Tabs are accepted as separation
after a token (``log_level: CRITICAL<TAB>``, seen in real FDLs), never as indentation.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DOCUMENT_BYTES: Final = 1024 * 1024
MAX_ALIASES: Final = 16
MAX_EXPANDED_NODES: Final = 20_000
MAX_DEPTH: Final = 32

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class YamlLimitError(ValueError):
    """The document is refused before construction: too big, too deep, or alias-expanding."""


class YamlInt(int):
    """An ``int`` read from YAML that remembers how it was written."""

    text: str


class YamlFloat(float):
    """A ``float`` read from YAML that remembers how it was written."""

    text: str


def _resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """The YAML 1.2 core schema's implicit tags, plus ``<<`` merge keys (which Go's decoder also honours)."""
    table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}

    def add(tag: str, pattern: str, first: str) -> None:
        compiled = re.compile(pattern, re.VERBOSE)
        for char in first or [None]:
            table.setdefault(char, []).append((tag, compiled))

    add("tag:yaml.org,2002:null", r"^(?: ~ | null | Null | NULL | )$", "~nN")
    table.setdefault("", []).append(("tag:yaml.org,2002:null", re.compile(r"^$")))
    add("tag:yaml.org,2002:bool", r"^(?: true | True | TRUE | false | False | FALSE )$", "tTfF")
    add("tag:yaml.org,2002:int", r"^(?: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+ )$", "-+0123456789")
    add(
        "tag:yaml.org,2002:float",
        r"""^(?: [-+]? (?: \.[0-9]+ | [0-9]+ (?: \.[0-9]* )? ) (?: [eE][-+]?[0-9]+ )?
               | [-+]? \. (?: inf | Inf | INF )
               | \. (?: nan | NaN | NAN ) )$""",
        "-+0123456789.",
    )
    add(_MERGE_TAG, r"^<<$", "<")
    return table


class _GuardedLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader with the guards described in the module docstring."""

    yaml_implicit_resolvers = _resolvers()

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._open_anchors: set[str] = set()

    def scan_to_next_token(self) -> None:
        """Skip spaces, comments and line breaks -- and tabs, unless they would be indentation."""
        if self.index == 0 and self.peek() == "\ufeff":
            self.forward()
        in_indentation = self.column == 0
        while True:
            while self.peek() == " " or (self.peek() == "\t" and (self.flow_level or not in_indentation)):
                self.forward()
            if self.peek() == "#":
                while self.peek() not in "\0\r\n\x85\u2028\u2029":
                    self.forward()
            if not self.scan_line_break():  # type: ignore[no-untyped-call]
                return
            in_indentation = True
            if not self.flow_level:
                self.allow_simple_key = True

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """Compose as PyYAML does, counting aliases and depth and refusing recursive aliases."""
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = _line(event)
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimitError(f"more than {MAX_ALIASES} YAML aliases ({line})")
            if event.anchor in self._open_anchors:
                raise YamlLimitError(f"recursive YAML alias *{event.anchor} ({line})")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(f"YAML nested deeper than {MAX_DEPTH} levels ({line})")
        anchor = event.anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Construct a mapping, refusing keys written twice (merged ``<<`` keys may be overridden)."""
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(identity)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> YamlInt:
        """YAML 1.2 core integers (decimal, ``0o`` octal, ``0x`` hex), keeping their text."""
        text = str(self.construct_scalar(node))
        try:
            if text.startswith("0o"):
                value = YamlInt(int(text[2:], 8))
            elif text.startswith("0x"):
                value = YamlInt(int(text[2:], 16))
            else:
                value = YamlInt(int(text, 10))
        except ValueError:
            raise _bad_scalar(node, "integer") from None
        value.text = text
        return value

    def construct_yaml_float(self, node: ScalarNode) -> YamlFloat:
        """YAML 1.2 core floats, keeping their text."""
        text = str(self.construct_scalar(node))
        lowered = text.lower()
        if lowered in {".inf", "+.inf", "-.inf"}:
            value = YamlFloat("-inf" if lowered.startswith("-") else "inf")
        elif lowered == ".nan":
            value = YamlFloat("nan")
        elif _FLOAT_TEXT.fullmatch(text):
            value = YamlFloat(text)
        else:
            raise _bad_scalar(node, "float")
        value.text = text
        return value

    def construct_refused(self, node: Node) -> None:
        """Explicitly tagged timestamps, binaries, sets and ordered maps have no place in an FDL."""
        raise yaml.constructor.ConstructorError(
            None, None, f"YAML tag {node.tag!r} is not allowed in service definitions", node.start_mark
        )


_FLOAT_TEXT: Final = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")


def _bad_scalar(node: Node, kind: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, f"invalid {kind} {node.value!r}", node.start_mark)


_GuardedLoader.add_constructor("tag:yaml.org,2002:int", _GuardedLoader.construct_yaml_int)
_GuardedLoader.add_constructor("tag:yaml.org,2002:float", _GuardedLoader.construct_yaml_float)
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _GuardedLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _GuardedLoader.construct_refused)


def _line(event: object) -> str:
    mark = getattr(event, "start_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "unknown line"


def _expanded_size(root: Node) -> int:
    """Number of nodes the document has once every alias is expanded (aliases share node objects)."""
    sizes: dict[int, int] = {}

    def size(node: Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        total = min(total, MAX_EXPANDED_NODES + 1)  # saturate: the exact figure past the bound is moot
        sizes[id(node)] = total
        return total

    return size(root)


def load_yaml(text: str) -> Any:
    """Parse one YAML document safely (see module docstring); ``None`` for an empty document.

    Raises ``YamlLimitError`` when a bound is exceeded and ``yaml.YAMLError`` for malformed YAML.
    """
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise YamlLimitError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    loader = _GuardedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if _expanded_size(root) > MAX_EXPANDED_NODES:
            raise YamlLimitError(f"document expands to more than {MAX_EXPANDED_NODES} nodes through aliases")
        return loader.construct_document(root)
    finally:
        loader.dispose()

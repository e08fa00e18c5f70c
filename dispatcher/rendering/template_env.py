"""The Jinja2 environment that renders Kubernetes manifests without letting a value change their shape.

Every `{{ … }}` in a bucketrun template must go through the `tojson` filter: a value rendered as a
JSON literal is a YAML flow scalar/collection too, so quotes, newlines, `{{`, `$(…)`, `: ` or `- `
inside an object key or an FDL string stay data. The environment enforces this rather than trusting
template authors (operators may override templates): `finalize` refuses any expression output that
is not a `JsonLiteral` produced by `tojson`.

Jinja's own `tojson` is built for HTML: it escapes `<>&'` (harmless) but, with `ensure_ascii`, writes
characters outside the BMP as surrogate pairs, which PyYAML refuses ("invalid Unicode character escape
code"). Ours writes them raw and escapes only what YAML would otherwise read differently: characters
outside YAML's printable set and the YAML 1.1 line breaks NEL, LS and PS (PyYAML folds a raw NEL inside
a quoted scalar into a space).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dispatcher.rendering.skeleton import NOT_PLAIN, NotPlainError, plain_copy

# Characters PyYAML would reject or reinterpret inside a double-quoted scalar.
_YAML_UNSAFE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

SLOT_PREFIX: Final = f"bucketrun-slot-{secrets.token_hex(8)}-"
"""Start of the placeholders a slot-mode render writes (random per process: no template or value can
spell one in advance). See `dispatcher.rendering.skeleton`."""
_recording: ContextVar[list[Any] | None] = ContextVar("bucketrun_template_slots", default=None)


class TemplateSafetyError(ValueError):
    """A template or a value would break the manifest's shape; the message says which."""


class JsonLiteral(str):
    """Text produced by `tojson`: the only thing templates may interpolate."""

    __slots__ = ()


def yaml_safe_json(value: Any) -> JsonLiteral:
    """Render *value* as a JSON literal that YAML parses back to exactly *value*."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the missing variable
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TemplateSafetyError(f"value {value!r:.80} cannot be rendered as JSON: {exc}") from exc
    if _LONE_SURROGATE.search(text):
        raise TemplateSafetyError(f"value {value!r:.80} is not valid Unicode (lone surrogate)")
    return JsonLiteral(_YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _tojson(value: Any) -> JsonLiteral:
    """The `tojson` filter: the value's JSON literal, or in slot mode a placeholder (value kept aside).

    Both modes refuse the same values: in slot mode a plain value (whose JSON cannot fail) is only
    searched for lone surrogates while it is copied, anything else goes through `yaml_safe_json`.
    """
    slots = _recording.get()
    if slots is None:
        return yaml_safe_json(value)

    def refuse_surrogates(text: str) -> None:
        if _LONE_SURROGATE.search(text):
            raise TemplateSafetyError(f"value {value!r:.80} is not valid Unicode (lone surrogate)")

    try:
        slots.append(plain_copy(value, refuse_surrogates))
    except (NotPlainError, RecursionError):
        yaml_safe_json(value)  # raises what the ordinary render would raise
        slots.append(NOT_PLAIN)
    return JsonLiteral(f'"{SLOT_PREFIX}{len(slots) - 1}"')


@contextmanager
def recording_slots() -> Iterator[list[Any]]:
    """Slot mode for renders in this context: `tojson` writes placeholders and appends each value to
    the list yielded (in placeholder order)."""
    slots: list[Any] = []
    token = _recording.set(slots)
    try:
        yield slots
    finally:
        _recording.reset(token)


def _only_json_literals(value: Any) -> Any:
    if isinstance(value, JsonLiteral):
        return value
    raise TemplateSafetyError(
        f"template interpolates {value!r:.80} without `| tojson`; every value must pass through tojson"
    )


def make_environment(template_dirs: list[Path]) -> ImmutableSandboxedEnvironment:
    """A sandboxed, StrictUndefined environment loading templates from *template_dirs* in order.

    Earlier directories win, so an operator's directory placed first overrides bucketrun's defaults
    template by template.
    """
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_only_json_literals,
    )
    env.filters["tojson"] = _tojson
    env.policies["json.dumps_function"] = None
    return env

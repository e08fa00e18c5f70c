"""The configuration reference (docs/CONFIGURATION.md), generated from the settings models.

Every variable, its group, its full documentation and its default come from the settings models
themselves (``dispatcher/runtime/settings.py``, and the groups of other processes such as ``bucketrun
api``'s, which ``bucketrun.config_reference`` adds), so the reference cannot drift: a unit test compares
the committed file with the output. Regenerate with
``python -m bucketrun.config_reference > docs/CONFIGURATION.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pydantic import BaseModel

from dispatcher.runtime.settings import CONFIG_ENV, ENV_DELIMITER, ENV_PREFIX, Settings

HEADER = f"""# Configuration reference

Generated from the settings models by `python -m bucketrun.config_reference`; do not edit by hand.

Every setting is an environment variable `{ENV_PREFIX}<GROUP>{ENV_DELIMITER}<NAME>`, or the key
`<group>.<name>` of the YAML file named by `{CONFIG_ENV}` (environment variables win over the file).
Lists are written as JSON (`["a", "b"]`). Credentials are masked in `--print-settings`, in errors and
in logs. `bucketrun dispatcher --print-settings` shows the effective values.
"""


def reference_markdown(extra: Sequence[tuple[str, type[BaseModel], str]] = ()) -> str:
    """The whole reference as Markdown: ``Settings``' groups, then each *extra* (group, model, a note
    saying who reads it) of another process, whose variables follow the same naming."""
    lines = [HEADER, *_groups()]
    for group, model, note in extra:
        lines.extend(_group(group, model, note))
    return "\n".join(lines) + "\n"


def _groups() -> Iterator[str]:
    for group, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            yield from _group(group, model)


def _group(group: str, model: type[BaseModel], note: str = "") -> Iterator[str]:
    yield f"## `{group}` — {(model.__doc__ or '').strip().splitlines()[0]}\n"
    if note:
        yield f"{note}\n"
    for name, sub in model.model_fields.items():
        variable = f"{ENV_PREFIX}{group.upper()}{ENV_DELIMITER}{name.upper()}"
        doc = " ".join((sub.description or "(undocumented)").split())
        yield f"- **`{variable}`** — {doc}"
    yield ""

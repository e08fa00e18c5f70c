"""The configuration reference (docs/CONFIGURATION.md), generated from the settings models.

Every variable, its group, its full documentation and its default come from ``dispatcher/runtime/settings.py``
itself, so the reference cannot drift: a unit test compares the committed file with this output.
Regenerate with ``python -m dispatcher.runtime.config_doc > docs/CONFIGURATION.md``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from dispatcher.runtime.settings import CONFIG_ENV, ENV_DELIMITER, ENV_PREFIX, Settings

HEADER = f"""# Configuration reference

Generated from `dispatcher/runtime/settings.py` by `python -m dispatcher.runtime.config_doc`; do not
edit by hand.

Every setting is an environment variable `{ENV_PREFIX}<GROUP>{ENV_DELIMITER}<NAME>`, or the key
`<group>.<name>` of the YAML file named by `{CONFIG_ENV}` (environment variables win over the file).
Lists are written as JSON (`["a", "b"]`). Credentials are masked in `--print-settings`, in errors and
in logs. `bucketrun dispatcher --print-settings` shows the effective values.
"""


def reference_markdown() -> str:
    """The whole reference as Markdown."""
    return "\n".join([HEADER, *_groups()]) + "\n"


def _groups() -> Iterator[str]:
    for group, field in Settings.model_fields.items():
        model = field.annotation
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            continue
        yield f"## `{group}` — {(model.__doc__ or '').strip().splitlines()[0]}\n"
        for name, sub in model.model_fields.items():
            variable = f"{ENV_PREFIX}{group.upper()}{ENV_DELIMITER}{name.upper()}"
            doc = " ".join((sub.description or "(undocumented)").split())
            yield f"- **`{variable}`** — {doc}"
        yield ""


if __name__ == "__main__":
    print(reference_markdown(), end="")  # noqa: T201 - the generator's output

"""Kubernetes' `$(VAR)` expansion for command, args and env values.

The rules (kubernetes/third_party/forked/golang/expansion) are:
- `$(NAME)` becomes the value of NAME when NAME is defined, and stays `$(NAME)` otherwise;
- `$$` becomes a single `$`, so `$$(NAME)` is the literal text `$(NAME)`;
- any other `$` (followed by another character, or an unclosed `$(`) is kept as written.
There is no recursion: an expanded value is not expanded again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

_OPERATOR = "$"
_OPENER = "("
_CLOSER = ")"


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand `$(VAR)` references in *text* with *lookup* (None means undefined: keep the reference)."""
    if _OPERATOR not in text:
        return text
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == _OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1]
            if following == _OPERATOR:
                out.append(_OPERATOR)
                cursor += 1
            elif following == _OPENER:
                closer = text.find(_CLOSER, cursor + 2)
                if closer < 0:
                    # Unclosed reference: Kubernetes keeps "$(" and carries on after it.
                    out.append(_OPERATOR + _OPENER)
                    cursor += 1
                else:
                    name = text[cursor + 2 : closer]
                    value = lookup(name)
                    out.append(f"$({name})" if value is None else value)
                    cursor = closer
            else:
                out.append(_OPERATOR + following)
                cursor += 1
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def expand_with(text: str, variables: Mapping[str, str]) -> str:
    """Expand `$(VAR)` references in *text* from the mapping *variables*."""
    return expand(text, variables.get)

"""What loading service definitions reports: warnings it collects and the error it raises.

Both name the place of the finding the same way -- file, service, field -- so a user reading
``oscar-x.yaml: service 'grayify': field 'cpu': invalid quantity '1..0'`` knows where to look.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

# A message quotes the offending value; a hostile or accidental megabyte-long value must not turn
# one error line into a megabyte of log.
_SHOWN_CHARS: Final = 80


def shown(value: object) -> str:
    """``repr`` of ``value`` for a message: control characters escaped, long values cut in the middle."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    half = _SHOWN_CHARS // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} chars)"


@dataclass(frozen=True, slots=True)
class _Finding:
    file: str
    service: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.file]
        if self.service is not None:
            parts.append(f"service {shown(self.service)}")
        if self.field is not None:
            parts.append(f"field {shown(self.field)}")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(frozen=True, slots=True)
class ServiceWarning(_Finding):
    """Something a definition asks for that bucketrun ignores without changing what the job does.

    ``file`` is the FDL file (as given), ``service`` the service name (or ``#n``, its position in the
    file, when it has no usable name; ``None`` for file-level findings), ``field`` the FDL field path
    (``environment.variables.PORT``, ``input[0].path``) or ``None``.
    """


@dataclass(frozen=True, slots=True)
class ServiceProblem(_Finding):
    """One reason a definition was refused; same fields as ``ServiceWarning``."""


class ServiceDefinitionError(ValueError):
    """Service definitions were refused; ``problems`` lists every reason found, in file order."""

    def __init__(self, problems: Iterable[ServiceProblem]) -> None:
        """Collect ``problems`` (at least one) into one error whose message lists them all."""
        self.problems: tuple[ServiceProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("ServiceDefinitionError needs at least one problem")
        count = len(self.problems)
        heading = "1 problem" if count == 1 else f"{count} problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid service definitions ({heading}):\n{lines}")


class FieldValidationError(ValueError):
    """Raised by model validators that find several problems at once, each tied to an FDL field.

    Pydantic keeps the raised exception in the error's context, so the loader can report each
    ``(field, message)`` separately instead of one opaque string.
    """

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        """``errors`` are ``(FDL field path, message)`` pairs; at least one."""
        self.errors = tuple(errors)
        super().__init__("; ".join(f"field {field!r}: {message}" for field, message in self.errors))

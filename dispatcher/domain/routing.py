"""Which services an ``ObjectEvent`` starts a job for: pure matching on bucket, folder, filters, event type.

An input matches an event when all of these hold, checked in this order (the order ``explain`` reports):

1. same bucket (and same storage provider, when the caller names the provider the event came from);
2. the key lies under the input's folder at a path boundary: folder ``in`` takes ``in/x`` but not
   ``input/x`` nor an object named ``in``; the empty folder takes the whole bucket;
3. the event name matches one of the input's patterns. A pattern ending in ``*`` matches every name that
   starts with what precedes the ``*`` -- MinIO's ``s3:ObjectCreated:*`` form, which (as in MinIO) includes
   the metadata-only ``PutTagging``/``PutRetention``/... events; any other pattern must equal the name. An
   input without patterns matches no event;
4. the key relative to the folder starts with any of ``prefix`` and ends with any of ``suffix``
   (case-sensitive; an empty tuple accepts every key).

Folder markers (keys ending in ``/``) never route. Several services may share a bucket: every matching
service is returned, in the order the services were given, once even when several of its inputs match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Generic, Protocol, TypeVar

from dispatcher.domain.events import EventKind, ObjectEvent, display_value

_EXPLAINED_INPUTS: Final = 5


class RoutableInput(Protocol):
    """What routing needs from a service input (read-only, so frozen models and dataclasses fit)."""

    @property
    def provider(self) -> str:
        """Storage provider id the input watches (e.g. ``minio.default``)."""

    @property
    def bucket(self) -> str:
        """Bucket name."""

    @property
    def folder(self) -> str:
        """Folder inside the bucket: ``""`` or ``"a/b"`` (no leading or trailing slash)."""

    @property
    def prefix(self) -> tuple[str, ...]:
        """Accepted key prefixes, relative to the folder; empty accepts all."""

    @property
    def suffix(self) -> tuple[str, ...]:
        """Accepted key suffixes; empty accepts all."""

    @property
    def events(self) -> tuple[str, ...]:
        """MinIO event-name patterns such as ``s3:ObjectCreated:*`` or ``s3:ObjectRemoved:Delete``."""


class Routable(Protocol):
    """What routing needs from a service."""

    @property
    def name(self) -> str:
        """Service name."""

    @property
    def inputs(self) -> Sequence[RoutableInput]:
        """The service's inputs; any one matching routes the event to the service."""


S = TypeVar("S", bound=Routable)


@dataclass(frozen=True, slots=True)
class Route(Generic[S]):
    """A service an event routes to, and the (first) input of that service that matched it."""

    service: S
    input: RoutableInput


class NoRouteReason(StrEnum):
    """Why an event routes nowhere; a short code for metrics and dead-letter headers."""

    FOLDER_MARKER = "folder-marker"
    UNKNOWN_BUCKET = "unknown-bucket"
    FOLDER_MISMATCH = "folder-mismatch"
    EVENT_NOT_HANDLED = "event-not-handled"
    FILTERED = "filtered"


# How far an input got before it refused the event; the furthest one names the overall reason.
_STAGE_ORDER: Final = (NoRouteReason.FOLDER_MISMATCH, NoRouteReason.EVENT_NOT_HANDLED, NoRouteReason.FILTERED)


@dataclass(frozen=True, slots=True)
class NoRoute:
    """Why an event routes nowhere: a reason code and a message naming the event and each input's miss."""

    reason: NoRouteReason
    message: str


@dataclass(frozen=True, slots=True)
class _CompiledInput(Generic[S]):
    """One input with its matching data prepared once, so matching an event does no string building."""

    order: int  # the service's position in the services given to the Router
    service: S
    input: RoutableInput
    under: str  # "folder/" or "" for the whole bucket
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]
    exact_events: frozenset[str]
    event_prefixes: tuple[str, ...]

    @classmethod
    def build(cls, order: int, service: S, item: RoutableInput) -> _CompiledInput[S]:
        folder = item.folder.strip("/")
        return cls(
            order=order,
            service=service,
            input=item,
            under=f"{folder}/" if folder else "",
            prefixes=tuple(item.prefix),
            suffixes=tuple(item.suffix),
            exact_events=frozenset(pattern for pattern in item.events if not pattern.endswith("*")),
            event_prefixes=tuple(pattern[:-1] for pattern in item.events if pattern.endswith("*")),
        )

    def miss(self, event: ObjectEvent) -> NoRouteReason | None:
        """The first check this input's event fails, or None when the input takes the event."""
        if not event.key.startswith(self.under):
            return NoRouteReason.FOLDER_MISMATCH
        name = event.event_name
        # A wildcard takes content changes only: MinIO files PutTagging, PutRetention etc. under
        # ObjectCreated, and re-running a job because a tag changed would break "one Job per object
        # version". A service that wants them names them exactly.
        wildcard_match = event.kind is not EventKind.METADATA and name.startswith(self.event_prefixes)
        if name not in self.exact_events and not wildcard_match:
            return NoRouteReason.EVENT_NOT_HANDLED
        relative = event.key[len(self.under) :]
        if self.prefixes and not relative.startswith(self.prefixes):
            return NoRouteReason.FILTERED
        if self.suffixes and not relative.endswith(self.suffixes):
            return NoRouteReason.FILTERED
        return None

    def describe_miss(self, event: ObjectEvent, reason: NoRouteReason) -> str:
        where = f"{self.service.name} ({self.input.bucket}/{self.under})"
        if reason is NoRouteReason.FOLDER_MISMATCH:
            return f"{where}: key is not under folder {display_value(self.under.rstrip('/'))}"
        if reason is NoRouteReason.EVENT_NOT_HANDLED:
            handled = ", ".join(self.input.events) or "no event types"
            return f"{where}: handles {handled}"
        relative = event.key[len(self.under) :]
        if self.prefixes and not relative.startswith(self.prefixes):
            return (
                f"{where}: {display_value(relative)} has none of the prefixes {display_value(self.prefixes)}"
            )
        return f"{where}: {display_value(relative)} has none of the suffixes {display_value(self.suffixes)}"


class Router(Generic[S]):
    """Routes events to services; build it once per set of services (it indexes inputs by bucket)."""

    def __init__(self, services: Iterable[S]) -> None:
        """Index the inputs of ``services``; their order is the order routes are returned in."""
        self._services = tuple(services)
        by_bucket: dict[str, list[_CompiledInput[S]]] = {}
        for order, service in enumerate(self._services):
            for item in service.inputs:
                by_bucket.setdefault(item.bucket, []).append(_CompiledInput.build(order, service, item))
        self._by_bucket = {bucket: tuple(entries) for bucket, entries in by_bucket.items()}

    @property
    def services(self) -> tuple[S, ...]:
        """The services this router was built from, in routing order."""
        return self._services

    def route(self, event: ObjectEvent, *, provider: str | None = None) -> tuple[Route[S], ...]:
        """Every service the event starts a job for, in service order, each once.

        ``provider`` restricts matching to inputs of that storage provider (for consumers that know which
        provider's queue the event came from); None matches inputs of any provider.
        """
        if event.is_folder_marker:
            return ()
        routes: list[Route[S]] = []
        routed: set[int] = set()
        for entry in self._candidates(event, provider):
            if entry.order not in routed and entry.miss(event) is None:
                routed.add(entry.order)
                routes.append(Route(entry.service, entry.input))
        return tuple(routes)

    def explain(self, event: ObjectEvent, *, provider: str | None = None) -> NoRoute | None:
        """Why the event routes nowhere, or None when it routes somewhere."""
        shown = f"{event.event_name} {display_value(f'{event.bucket}/{event.key}')}"
        if event.is_folder_marker:
            return NoRoute(
                NoRouteReason.FOLDER_MARKER, f"{shown} is a folder marker; folder markers never route"
            )
        candidates = self._candidates(event, provider)
        if not candidates:
            on_provider = f" on provider {display_value(provider)}" if provider is not None else ""
            watched = display_value(sorted(self._by_bucket))
            return NoRoute(
                NoRouteReason.UNKNOWN_BUCKET,
                f"{shown}: no service watches bucket {display_value(event.bucket)}{on_provider}"
                f" (watched buckets: {watched})",
            )
        misses: list[tuple[_CompiledInput[S], NoRouteReason]] = []
        for entry in candidates:
            reason = entry.miss(event)
            if reason is None:
                return None
            misses.append((entry, reason))
        furthest = max((reason for _, reason in misses), key=_STAGE_ORDER.index)
        details = [entry.describe_miss(event, reason) for entry, reason in misses[:_EXPLAINED_INPUTS]]
        if len(misses) > _EXPLAINED_INPUTS:
            details.append(f"and {len(misses) - _EXPLAINED_INPUTS} more inputs")
        return NoRoute(furthest, f"{shown} matches no input ({furthest}): " + "; ".join(details))

    def _candidates(self, event: ObjectEvent, provider: str | None) -> tuple[_CompiledInput[S], ...]:
        entries = self._by_bucket.get(event.bucket, ())
        if provider is None:
            return entries
        return tuple(entry for entry in entries if entry.input.provider == provider)


def route(event: ObjectEvent, services: Sequence[S], *, provider: str | None = None) -> tuple[Route[S], ...]:
    """Every service ``event`` starts a job for (see the module docstring); builds a one-off ``Router``."""
    return Router(services).route(event, provider=provider)

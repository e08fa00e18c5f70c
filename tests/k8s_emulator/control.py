"""`EmulatorControl`: a small synchronous client of the emulator's /_emulator/ control API (urllib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from tests.k8s_emulator.config import rules_from_rates
from tests.k8s_emulator.faults import FaultPlan, FaultRule


class ControlError(RuntimeError):
    """The control API refused a request; the message carries its answer."""


class EmulatorControl:
    """Drive a running emulator: faults, kubelet mode, watches, namespaces, request stats."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is the emulator's own http://127.0.0.1 address
            f"{self.url}/_emulator/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - see above
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            with error:  # an error answer holds its connection open until closed
                answer = error.read().decode()
            raise ControlError(f"{method} /_emulator/{path} answered {error.code}: {answer}") from error

    # -- state ------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Revision, compaction, open watches, kubelet, Job controller and fault settings, object counts."""
        result: dict[str, Any] = self._call("GET", "state")
        return result

    def reset(self) -> None:
        """Every runtime knob back to its start-up value (objects are kept)."""
        self._call("POST", "reset")

    # -- faults -----------------------------------------------------------------------------------------

    def set_faults(
        self,
        *,
        error_rates: Mapping[int, float] | None = None,
        verbs: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        rules: Sequence[FaultRule] = (),
        latency: float | tuple[float, float] = 0.0,
        retry_after_seconds: int = 1,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Replace the fault plan: error rates by status ({500: 0.3, 429: 0.05}), optionally only for
        *verbs* ("create", "watch", …) and *resources* ("jobs", …), plus extra *rules*; latency in
        seconds (fixed or (min, max)); the Retry-After of 429s; a seed for reproducible dice."""
        all_rules = rules_from_rates(error_rates or {}, verbs, resources) + tuple(rules)
        bounds = latency if isinstance(latency, tuple) else (latency, latency)
        plan = FaultPlan(all_rules, (float(bounds[0]), float(bounds[1])), retry_after_seconds, seed)
        result: dict[str, Any] = self._call("PUT", "faults", plan.to_json())
        return result

    def clear_faults(self) -> None:
        """No injected errors and no latency."""
        self._call("DELETE", "faults")

    # -- watches ----------------------------------------------------------------------------------------

    def drop_watches(self) -> int:
        """Close every open watch stream now; returns how many were open."""
        return int(self._call("POST", "watches/drop")["dropped"])

    def stall_watches(self) -> int:
        """Make every open watch stream go silent but stay open (a half-open connection): no event, no
        bookmark, no end at timeoutSeconds, until the client gives up. Returns how many were open."""
        return int(self._call("POST", "watches/stall")["stalled"])

    def expire_next_watch(self, count: int = 1) -> None:
        """The next *count* watch calls get 410 Expired whatever resourceVersion they ask for."""
        self._call("POST", "watches/expire-next", {"count": count})

    def set_watch_knobs(self, *, bookmark_interval: float) -> None:
        """Seconds between the BOOKMARK events of watches that allow them."""
        self._call("PUT", "watches", {"bookmark_interval": bookmark_interval})

    def open_watches(self) -> int:
        """Watch streams open right now."""
        return int(self.state()["watches"]["open"])

    def stalled_watches(self) -> int:
        """Stalled watch streams whose clients are still connected."""
        return int(self.state()["watches"]["stalled"])

    # -- controllers ------------------------------------------------------------------------------------

    def set_kubelet(
        self,
        mode: str | None = None,
        *,
        max_running_pods: int | None = None,
        failing_images: list[str] | None = None,
    ) -> None:
        """Kubelet mode (run | instant | off), how many pods may run at once, and/or the image patterns
        whose pulls fail (the image-pull fault; `[]` clears it)."""
        body: dict[str, Any] = {}
        if mode is not None:
            body["mode"] = mode
        if max_running_pods is not None:
            body["max_running_pods"] = max_running_pods
        if failing_images is not None:
            body["failing_images"] = list(failing_images)
        self._call("PUT", "kubelet", body)

    def reset_namespace(self, namespace: str) -> int:
        """Delete every object in *namespace* (pods' processes are killed); returns how many."""
        return int(self._call("DELETE", f"namespaces/{quote(namespace, safe='')}")["deleted"])

    # -- stats ------------------------------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Request counts: rows of verb, resource, subresource, namespace, code, count."""
        result: list[dict[str, Any]] = self._call("GET", "stats")
        return result

    def reset_stats(self) -> None:
        """Zero every request count and peak."""
        self._call("DELETE", "stats")

    def peak_in_flight(self, *, verb: str, resource: str, subresource: str = "") -> int:
        """The most requests of this kind that were in progress at once since the last reset (0: none)."""
        for row in self._call("GET", "stats/peaks"):
            if (row["verb"], row["resource"], row["subresource"]) == (verb, resource, subresource):
                return int(row["peak"])
        return 0

    def request_count(
        self,
        *,
        verb: str | Sequence[str] | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        code: int | None = None,
    ) -> int:
        """How many API requests matched every given dimension (verb may be several, e.g. the writes)."""
        verbs = {verb} if isinstance(verb, str) else set(verb) if verb is not None else None
        total = 0
        for row in self.stats():
            if verbs is not None and row["verb"] not in verbs:
                continue
            if resource is not None and row["resource"] != resource:
                continue
            if subresource is not None and row["subresource"] != subresource:
                continue
            if namespace is not None and row["namespace"] != namespace:
                continue
            if code is not None and row["code"] != code:
                continue
            total += int(row["count"])
        return total


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
"""Verbs that change objects, for `request_count(verb=WRITE_VERBS, …)`."""

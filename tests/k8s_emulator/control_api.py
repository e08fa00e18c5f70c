"""The emulator's own HTTP control API under /_emulator/ (never subject to fault injection).

GET  state                       revision, compaction, open watches, kubelet and fault settings
PUT  faults / DELETE faults      replace the fault plan (rules, latency, retry_after_seconds, seed) / clear it
PUT  watches                     {"bookmark_interval": s}
POST watches/drop                close every open watch now            -> {"dropped": n}
POST watches/stall               every open watch goes silent, open    -> {"stalled": n}
POST watches/expire-next         the next N watch calls get 410        body {"count": n}
PUT  kubelet                     {"mode": "run|instant|off", "max_running_pods": n, "failing_images": [...]}
POST reset                       every knob back to its start-up value (objects are kept)
DELETE namespaces/{ns}           delete every object in the namespace  -> {"deleted": n}
GET  stats / DELETE stats        request counts by verb, resource, subresource, namespace, code
GET  stats/peaks                 most requests of one verb, resource, subresource in progress at once
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.k8s_emulator.faults import FaultPlan
from tests.k8s_emulator.store import dump_json

if TYPE_CHECKING:
    from tests.k8s_emulator.server import Emulator

PREFIX = "/_emulator"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=dump_json(body), status=status, content_type="application/json")


async def _payload(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the control API takes a JSON object")
    return data


def _bad(error: Exception) -> web.Response:
    return _json({"error": str(error)}, 400)


def _set_bookmark_interval(emulator: Emulator, data: dict[str, Any]) -> None:
    """Set the bookmark interval of *data*; ValueError naming any other key, or a value not positive."""
    if set(data) != {"bookmark_interval"}:
        raise ValueError(f"the only watch knob is bookmark_interval, got {sorted(data)}")
    interval = float(data["bookmark_interval"])
    if interval <= 0:
        raise ValueError(f"bookmark_interval must be positive, got {interval}")
    emulator.watches.knobs.bookmark_interval = interval


def add_routes(app: web.Application, emulator: Emulator) -> None:
    """Register the control endpoints for *emulator*."""

    async def state(_: web.Request) -> web.Response:
        return _json(emulator.state())

    async def put_faults(request: web.Request) -> web.Response:
        try:
            emulator.faults.set_plan(FaultPlan.from_json(await _payload(request)))
        except (ValueError, TypeError, KeyError) as error:
            return _bad(error)
        return _json(emulator.faults.plan.to_json())

    async def clear_faults(_: web.Request) -> web.Response:
        emulator.faults.set_plan(FaultPlan())
        return _json(emulator.faults.plan.to_json())

    async def put_watches(request: web.Request) -> web.Response:
        try:
            _set_bookmark_interval(emulator, await _payload(request))
        except (ValueError, TypeError) as error:
            return _bad(error)
        return _json(emulator.state()["watches"])

    async def drop_watches(_: web.Request) -> web.Response:
        return _json({"dropped": emulator.watches.drop_all()})

    async def stall_watches(_: web.Request) -> web.Response:
        return _json({"stalled": emulator.watches.stall_all()})

    async def expire_next(request: web.Request) -> web.Response:
        data = await _payload(request)
        emulator.watches.knobs.expire_next += int(data.get("count", 1))
        return _json({"expire_next": emulator.watches.knobs.expire_next})

    async def put_kubelet(request: web.Request) -> web.Response:
        data = await _payload(request)
        try:
            failing = data.get("failing_images")
            emulator.kubelet.set_knobs(
                data.get("mode"),
                data.get("max_running_pods"),
                tuple(failing) if isinstance(failing, list) else failing,
            )
        except (ValueError, TypeError) as error:
            return _bad(error)
        return _json(emulator.state()["kubelet"])

    async def reset(_: web.Request) -> web.Response:
        emulator.reset_knobs()
        return _json(emulator.state())

    async def reset_namespace(request: web.Request) -> web.Response:
        return _json({"deleted": emulator.objects.delete_namespace_contents(request.match_info["namespace"])})

    async def stats(_: web.Request) -> web.Response:
        return _json(emulator.stats.to_json())

    async def peaks(_: web.Request) -> web.Response:
        return _json(emulator.stats.peaks_to_json())

    async def reset_stats(_: web.Request) -> web.Response:
        emulator.stats.reset()
        return _json([])

    app.router.add_get(f"{PREFIX}/state", state)
    app.router.add_put(f"{PREFIX}/faults", put_faults)
    app.router.add_delete(f"{PREFIX}/faults", clear_faults)
    app.router.add_put(f"{PREFIX}/watches", put_watches)
    app.router.add_post(f"{PREFIX}/watches/drop", drop_watches)
    app.router.add_post(f"{PREFIX}/watches/stall", stall_watches)
    app.router.add_post(f"{PREFIX}/watches/expire-next", expire_next)
    app.router.add_put(f"{PREFIX}/kubelet", put_kubelet)
    app.router.add_post(f"{PREFIX}/reset", reset)
    app.router.add_delete(f"{PREFIX}/namespaces/{{namespace}}", reset_namespace)
    app.router.add_get(f"{PREFIX}/stats", stats)
    app.router.add_delete(f"{PREFIX}/stats", reset_stats)
    app.router.add_get(f"{PREFIX}/stats/peaks", peaks)

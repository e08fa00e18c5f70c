"""The soak's faults, scheduled by progress (Jobs created), never by the clock, and their recovery times.

Progress is read from the request log of the soak's cluster (the fault proxy's, or the emulator's):
Job creates answered 201 ("creates") and Job annotations written by the watcher when it has recorded a
Job ("records"). A fault fires once the
creates reach its threshold; once it is over, the runner measures how long the pipeline took to move
again (the fault's `progress` figure grows), then repairs what the fault broke for good (a killed
replica is replaced) before the next fault. A fault whose threshold is never reached, or after which
nothing moves again within `RECOVERY_WITHIN`, is recorded with no recovery time and fails the soak.

The feeder publishes through a `Gate` that the runner opens one slot of events per fault (`schedule`):
each fault fires while its slot is still on its way, and the next slot is released only once the
fault is over, so there is always fresh work to measure recovery on, on a slow machine or a fast one.
Recovery is "from the fault's end until the figure grows again": for a broker restart, from the
moment the broker accepts connections again; for a SIGKILL, from the kill (the surviving replica, or
the standby once the Lease expires, must carry on); for a burst or a frozen S3, from its end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.backends.local_kube import LocalClusterControl
from tests.reliability.soak_report import FaultRecord
from tests.reliability.soak_stack import SoakStack

RECOVERY_WITHIN = 120.0
"""Seconds after a fault's end in which progress must resume (generous: a loaded 2-core machine)."""
TRIGGER_WITHIN = 600.0
"""Seconds a fault may wait for its threshold before the soak calls the pipeline stuck."""
STALLED_AFTER = 60.0
"""Seconds without a new Job after which a threshold counts as never reached (events were lost)."""
BROKER_DOWN = 5.0
"""Seconds RabbitMQ stays stopped (on top of its ~3 s stop and ~6 s boot)."""
BURST_429 = 4.0
"""Seconds each burst of 429s lasts."""
S3_OUTAGE = 10.0
"""Seconds the S3 server stays frozen during stage-out."""
BASE_ERROR_RATES = {500: 0.05}
"""Injected for the whole run: 5% of API requests answer 500."""
FAULT_SEED = 9


@dataclass(frozen=True)
class Progress:
    """Monotonic counters from the cluster's request log, for one namespace."""

    creates: int
    existing: int
    records: int

    def figure(self, name: str) -> int:
        """The counter a fault watches: "creates" or "records"."""
        return self.creates if name == "creates" else self.records


async def progress(stack: SoakStack) -> Progress:
    """Creates answered 201 and 409, and recorded-annotations written (patches answered 200)."""
    rows = await asyncio.to_thread(stack.control.stats)
    counts = {"creates": 0, "existing": 0, "records": 0}
    for row in rows:
        if row["namespace"] != stack.namespace or row["resource"] != "jobs" or row["subresource"]:
            continue
        if row["verb"] == "create" and row["code"] in (201, 409):
            counts["creates" if row["code"] == 201 else "existing"] += int(row["count"])
        elif row["verb"] == "patch" and row["code"] == 200:
            counts["records"] += int(row["count"])
    return Progress(**counts)


@dataclass(frozen=True)
class Fault:
    """One fault: fire at *at* creates (`schedule` sets it), `inject()` (returns when the fault is
    over, with a note), wait for *progress* to move, then `repair()` what stays broken."""

    name: str
    at: int
    progress: str
    inject: Callable[[], Awaitable[str]]
    repair: Callable[[], Awaitable[str]] | None = None


class Gate:
    """How many Job events the feeder may have published: the fault runner opens it step by step, so
    that fresh events keep arriving after each fault (its recovery is measured on new work, never on
    a run that already finished) however fast the machine is."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._moved = asyncio.Event()

    def open_to(self, limit: int) -> None:
        """Let the feeder publish up to *limit* Job events."""
        self.limit = max(self.limit, limit)
        self._moved.set()

    async def wait_for(self, count: int) -> None:
        """Return once *count* Job events may be published."""
        while count > self.limit:
            self._moved.clear()
            await self._moved.wait()


class FaultRunner:
    """Runs faults one after the other; `records` holds what happened (times relative to `origin`)."""

    def __init__(self, stack: SoakStack, origin: float, log: Callable[[str], None] = lambda _: None) -> None:
        self.stack = stack
        self.origin = origin
        self.log = log
        self.records: list[FaultRecord] = []

    def _now(self) -> float:
        return round(time.monotonic() - self.origin, 2)

    async def run(self, faults: list[Fault], gate: Gate, slots: list[int]) -> list[FaultRecord]:
        """Fire each fault at its threshold, measure recovery, repair; the list of what happened. The
        *gate* lets the feeder publish up to ``slots[k]`` Job events before fault k and opens
        ``slots[k + 1]`` once it is over, so fresh work always follows a fault; then everything."""
        for index, fault in enumerate(faults):
            gate.open_to(slots[index])
            following = slots[index + 1] if index + 1 < len(slots) else 1 << 62
            await self.run_one(fault, functools.partial(gate.open_to, following))
        gate.open_to(1 << 62)
        return self.records

    async def _wait_for_creates(self, threshold: int) -> int | None:
        """None once *threshold* Jobs were created; the count if it stalls short of it (no new Job for
        `STALLED_AFTER` s: events were lost) or after `TRIGGER_WITHIN` s."""
        deadline = time.monotonic() + TRIGGER_WITHIN
        last, since = -1, time.monotonic()
        while (creates := (await progress(self.stack)).creates) < threshold:
            if creates != last:
                last, since = creates, time.monotonic()
            elif time.monotonic() - since > STALLED_AFTER or time.monotonic() > deadline:
                return creates
            await asyncio.sleep(0.1)
        return None

    async def run_one(self, fault: Fault, after: Callable[[], None] = lambda: None) -> FaultRecord:
        """Wait for *fault*'s threshold, inject it, call *after* (new work may come), measure recovery,
        repair."""
        if (stalled_at := await self._wait_for_creates(fault.at)) is not None:
            record = FaultRecord(fault.name, self._now(), self._now(), fault.progress, None)
            record.note = f"not injected: creates stalled at {stalled_at}, short of its threshold {fault.at}"
            self.records.append(record)
            self.log(f"[soak] {record.ended:7.1f} s  {fault.name}: {record.note}")
            after()
            return record
        started = self._now()
        note = await fault.inject()
        ended_at = time.monotonic()
        record = FaultRecord(fault.name, started, self._now(), fault.progress, None, note)
        self.records.append(record)
        before = (await progress(self.stack)).figure(fault.progress)
        after()

        async def moved() -> bool:
            return (await progress(self.stack)).figure(fault.progress) > before

        if await poll(moved, RECOVERY_WITHIN):
            record.recovered_after = round(time.monotonic() - ended_at, 2)
        else:
            record.note = (record.note + "; " if record.note else "") + "NO PROGRESS AFTERWARDS"
        if fault.repair is not None:
            repaired = await fault.repair()
            record.note = f"{record.note}; {repaired}" if record.note else repaired
        recovered = record.recovered_after
        self.log(f"[soak] {record.ended:7.1f} s  {fault.name}: recovered after {recovered} s; {record.note}")
        return record


async def poll(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    """Poll *check* every 0.1 s for at most *within* seconds; whether it came true."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


# -- the faults themselves -------------------------------------------------------------------------------


def broker_restart(stack: SoakStack, number: int) -> Fault:
    """RabbitMQ stopped as an operator stops it, kept down for `BROKER_DOWN` s, started again."""

    async def inject() -> str:
        started = time.monotonic()
        await asyncio.to_thread(stack.node.stop)
        await asyncio.sleep(BROKER_DOWN)  # the outage itself: its length is the fault
        await asyncio.to_thread(stack.node.start)
        return f"broker unavailable {time.monotonic() - started:.1f} s"

    return Fault(f"RabbitMQ stop/restart #{number}", 0, "creates", inject)


def dispatcher_kill(stack: SoakStack, number: int) -> Fault:
    """SIGKILL one dispatcher replica (its whole process group); a replacement starts after recovery."""

    async def inject() -> str:
        victim = stack.live_dispatchers()[(number - 1) % 2]
        victim.kill()
        return f"killed pid {victim.pid}"

    async def repair() -> str:
        started = time.monotonic()
        replacement = await stack.start_dispatcher()
        return f"replacement pid {replacement.pid} ready after {time.monotonic() - started:.1f} s"

    return Fault(f"dispatcher SIGKILL #{number}", 0, "creates", inject, repair)


def watcher_leader_kill(stack: SoakStack) -> Fault:
    """SIGKILL the watcher holding the Lease; the standby must take over once the Lease expires."""

    async def inject() -> str:
        holder = await stack.wait_leader({w.identity for w in stack.live_watchers()})
        (leader,) = [w for w in stack.live_watchers() if w.identity == holder]
        leader.kill()
        return f"killed the leader {holder}"

    async def repair() -> str:
        successor = await stack.wait_leader({w.identity for w in stack.live_watchers()})
        return f"{successor} holds the Lease; new standby {stack.start_watcher().identity}"

    return Fault("watcher leader SIGKILL", 0, "records", inject, repair)


def api_429_burst(stack: SoakStack, number: int) -> Fault:
    """Half of all API requests answer 429 with Retry-After for `BURST_429` s (on top of the 500s)."""

    async def inject() -> str:
        control = stack.control
        await asyncio.to_thread(
            lambda: control.set_faults(
                error_rates={**BASE_ERROR_RATES, 429: 0.5}, retry_after_seconds=2, seed=FAULT_SEED + number
            )
        )
        await asyncio.sleep(BURST_429)  # the burst itself: its length is the fault
        await asyncio.to_thread(lambda: control.set_faults(error_rates=BASE_ERROR_RATES, seed=FAULT_SEED))
        return f"{BURST_429:.0f} s of 50% 429 (Retry-After: 2)"

    return Fault(f"API 429 burst #{number}", 0, "creates", inject)


def watch_drop(stack: SoakStack, number: int) -> Fault:
    """Every open watch stream (dispatchers' informers, the watcher's Job watch) ended at once."""

    async def inject() -> str:
        dropped = await asyncio.to_thread(stack.control.drop_watches)
        return f"{dropped} watch streams dropped"

    return Fault(f"watch streams dropped #{number}", 0, "records", inject)


def forced_410(stack: SoakStack) -> Fault:
    """The next watch call gets 410 Expired; the streams are dropped so that one comes at once."""

    async def inject() -> str:
        control = stack.control
        await asyncio.to_thread(control.expire_next_watch, 1)
        dropped = await asyncio.to_thread(control.drop_watches)
        return f"next watch answered 410 ({dropped} streams dropped to force a re-watch)"

    return Fault("forced 410 Gone", 0, "records", inject)


def compaction_and_restart(stack: SoakStack) -> Fault:
    """The real control plane only: etcd compacted to its latest revision, then kube-apiserver stopped
    and started again, so every client's watch ends, and a re-watch from a resourceVersion older than
    the compaction gets the API server's own 410 Expired (its new watch cache starts past it)."""

    async def inject() -> str:
        control = stack.control
        if not isinstance(control, LocalClusterControl):
            raise TypeError(f"needs the real control plane, not the {stack.cluster.backend}")
        revision = await asyncio.to_thread(control.compact)
        started = time.monotonic()
        await asyncio.to_thread(control.stop_apiserver)
        await asyncio.to_thread(control.start_apiserver)
        down = time.monotonic() - started
        return f"etcd compacted at revision {revision}; kube-apiserver down {down:.1f} s"

    return Fault("etcd compaction + kube-apiserver restart", 0, "records", inject)


def s3_outage(stack: SoakStack) -> Fault:
    """The S3 server frozen for `S3_OUTAGE` s while pods are staging out (a running pod's stage-out
    uploads hang, as do stage-ins and record writes), then thawed with all its data."""

    async def inject() -> str:
        async def pods_running() -> bool:
            state = await asyncio.to_thread(stack.control.state)
            return int(state["kubelet"]["running"]) >= 1

        running = await poll(pods_running, 60.0)
        state = await asyncio.to_thread(stack.control.state)
        stack.freeze_s3()
        try:
            await asyncio.sleep(S3_OUTAGE)  # the outage itself: its length is the fault
        finally:
            stack.thaw_s3()
        pods = state["kubelet"]["running"]
        return f"SIGSTOP S3 {S3_OUTAGE:.0f} s with {pods} pods running" + ("" if running else " (late)")

    return Fault("S3 unavailable during stage-out", 0, "records", inject)


def bulk_faults(stack: SoakStack) -> list[Fault]:
    """The bulk phase's faults, in the order they fire; `schedule` gives each its threshold."""
    return [
        api_429_burst(stack, 1),
        broker_restart(stack, 1),
        dispatcher_kill(stack, 1),
        watcher_leader_kill(stack),
        watch_drop(stack, 1),
        dispatcher_kill(stack, 2),
        compaction_and_restart(stack) if stack.cluster.real else forced_410(stack),
        broker_restart(stack, 2),
        api_429_burst(stack, 2),
        watch_drop(stack, 2),
        dispatcher_kill(stack, 3),
    ]


def schedule(faults: list[Fault], first: int, jobs: int) -> tuple[list[Fault], list[int]]:
    """Spread *faults* evenly over the bulk's *jobs* Job events (creates counted from *first*): the
    gate's limits (one slot of events per fault, and one after the last fault) and each fault firing
    two thirds into its slot, while the rest of the slot is still on its way."""
    slot = max(1, jobs // (len(faults) + 2))
    limits = [first + (index + 1) * slot for index in range(len(faults) + 1)]
    timed = [
        dataclasses.replace(fault, at=max(first + 1, limit - slot // 3))
        for fault, limit in zip(faults, limits, strict=False)
    ]
    return timed, limits

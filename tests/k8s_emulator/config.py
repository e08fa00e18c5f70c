"""The emulator's start-up knobs: one dataclass, its command line, and the fault plan it implies."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tests.k8s_emulator.faults import FaultPlan, FaultRule
from tests.k8s_emulator.kubelet import MODES


def parse_latency(text: str) -> tuple[float, float]:
    """ "0.05" (fixed) or "0.01,0.05" (uniform between) in seconds."""
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"latency must be 'SECONDS' or 'MIN,MAX', got {text!r}")


def rules_from_rates(
    error_rates: Mapping[int, float],
    verbs: Sequence[str] | None = None,
    resources: Sequence[str] | None = None,
) -> tuple[FaultRule, ...]:
    """One FaultRule per status code in *error_rates* ({500: 0.3, 429: 0.05}), restricted alike."""
    verb_set = frozenset(verbs) if verbs is not None else None
    resource_set = frozenset(resources) if resources is not None else None
    return tuple(
        FaultRule(int(code), float(rate), verb_set, resource_set) for code, rate in error_rates.items()
    )


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything `python -m tests.k8s_emulator` can be started with (the control API changes most later)."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; the URL is printed and written to ready_file."""
    state_dir: Path | None = None
    """Where pod workdirs go (a temporary directory when None)."""
    ready_file: Path | None = None
    """Written (JSON: url, pid) once the server listens."""
    kubelet: str = "run"
    """run | instant | off."""
    max_running_pods: int = 16
    max_grace_seconds: float = 2.0
    """Cap on the SIGTERM→SIGKILL grace given to pod processes."""
    history_window: int = 20_000
    """Watch events kept for resourceVersion replays; older ones are compacted away (410 Expired)."""
    bookmark_interval: float = 5.0
    """Seconds between BOOKMARK events on watches that allow them."""
    job_backoff_seconds: float = 0.0
    """Delay before a Job's failed pod is replaced."""
    error_rates: Mapping[int, float] | None = None
    """Injected error rate by HTTP status, e.g. {500: 0.3, 429: 0.05}, on every API request."""
    latency: float | tuple[float, float] = 0.0
    """Seconds added to each API request: fixed, or (min, max) uniform."""
    retry_after_seconds: int = 1
    """Retry-After of injected 429s."""
    seed: int | None = None
    """Seed of the fault dice (deterministic runs)."""
    drop_watch_after_events: int | None = None
    drop_watch_after_seconds: float | None = None
    log_level: str = "WARNING"

    def __post_init__(self) -> None:
        if self.kubelet not in MODES:
            raise ValueError(f"kubelet must be one of {', '.join(MODES)}, got {self.kubelet!r}")
        self.fault_plan()  # validates rates and latency early

    def fault_plan(self) -> FaultPlan:
        """The fault plan these knobs describe."""
        latency = (
            self.latency if isinstance(self.latency, tuple) else (float(self.latency), float(self.latency))
        )
        return FaultPlan(
            rules_from_rates(self.error_rates or {}),
            (float(latency[0]), float(latency[1])),
            self.retry_after_seconds,
            self.seed,
        )

    def to_argv(self) -> list[str]:
        """Command-line arguments that reproduce this configuration."""
        argv: list[str] = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None or value == spec.default:
                continue
            flag = "--" + spec.name.replace("_", "-")
            if spec.name == "error_rates":
                argv += [flag, json.dumps({str(k): v for k, v in value.items()})]
            elif spec.name == "latency":
                argv += [flag, ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)]
            else:
                argv += [flag, str(value)]
        return argv


def build_parser() -> argparse.ArgumentParser:
    """The emulator's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.k8s_emulator",
        description="A Kubernetes API emulator over real HTTP, with a Job controller and a local kubelet.",
    )
    defaults = EmulatorConfig()
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, help="pod workdirs (default: a temporary directory)")
    parser.add_argument("--ready-file", type=Path, help="JSON {url, pid} written once listening")
    parser.add_argument("--kubelet", choices=MODES, default=defaults.kubelet)
    parser.add_argument("--max-running-pods", type=int, default=defaults.max_running_pods)
    parser.add_argument("--max-grace-seconds", type=float, default=defaults.max_grace_seconds)
    parser.add_argument("--history-window", type=int, default=defaults.history_window)
    parser.add_argument("--bookmark-interval", type=float, default=defaults.bookmark_interval)
    parser.add_argument("--job-backoff-seconds", type=float, default=defaults.job_backoff_seconds)
    parser.add_argument("--error-rates", type=json.loads, help='JSON, e.g. \'{"500": 0.3, "429": 0.05}\'')
    parser.add_argument("--latency", type=parse_latency, default=(0.0, 0.0), help="SECONDS or MIN,MAX")
    parser.add_argument("--retry-after-seconds", type=int, default=defaults.retry_after_seconds)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--drop-watch-after-events", type=int)
    parser.add_argument("--drop-watch-after-seconds", type=float)
    parser.add_argument("--log-level", default=defaults.log_level)
    return parser


def config_from_argv(argv: Sequence[str] | None = None) -> EmulatorConfig:
    """Parse the command line into an EmulatorConfig."""
    namespace = build_parser().parse_args(argv)
    values: dict[str, Any] = vars(namespace)
    if values.get("error_rates") is not None:
        values["error_rates"] = {int(k): float(v) for k, v in values["error_rates"].items()}
    return EmulatorConfig(**values)

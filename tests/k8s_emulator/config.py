"""The emulator's start-up knobs (one dataclass and its command line), and fault rules from error rates."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from tests.k8s_emulator.faults import FaultPlan, FaultRule
from tests.k8s_emulator.kubelet import MODES


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
    """Everything `python -m tests.k8s_emulator` can be started with (the control API changes the rest)."""

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
    """Pods the kubelet runs at once in `run` mode."""
    history_window: int = 20_000
    """Watch events kept for resourceVersion replays; older ones are compacted away (410 Expired)."""
    seed: int | None = None
    """Seed of the fault dice until the first `set_faults` (deterministic runs)."""

    def __post_init__(self) -> None:
        if self.kubelet not in MODES:
            raise ValueError(f"kubelet must be one of {', '.join(MODES)}, got {self.kubelet!r}")

    def fault_plan(self) -> FaultPlan:
        """The fault plan in force at start-up and after a reset: no faults, the configured seed."""
        return FaultPlan(seed=self.seed)

    def to_argv(self) -> list[str]:
        """Command-line arguments that reproduce this configuration."""
        argv: list[str] = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is not None and value != spec.default:
                argv += ["--" + spec.name.replace("_", "-"), str(value)]
        return argv


def build_parser() -> argparse.ArgumentParser:
    """The emulator's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.k8s_emulator",
        description="A Kubernetes API emulator over real HTTP, with a Job controller and a local kubelet "
        "(the tests' fallback where the real control plane is not built). Faults, watch knobs and the "
        "kubelet mode change at runtime through the control API under /_emulator/.",
    )
    defaults = EmulatorConfig()
    parser.add_argument(
        "--host", default=defaults.host, help=f"address to listen on (default {defaults.host})"
    )
    parser.add_argument(
        "--port", type=int, default=defaults.port, help="TCP port; 0 (default) picks a free one"
    )
    parser.add_argument("--state-dir", type=Path, help="pod workdirs (default: a temporary directory)")
    parser.add_argument("--ready-file", type=Path, help="JSON {url, pid} written once listening")
    parser.add_argument(
        "--kubelet",
        choices=MODES,
        default=defaults.kubelet,
        help="run: pods run as local processes; instant: they end at once with the exit code of their "
        "emulator.bucketrun.io/exit-code annotation; off: they stay Pending (default run)",
    )
    parser.add_argument(
        "--max-running-pods",
        type=int,
        default=defaults.max_running_pods,
        help=f"pods running at once in run mode (default {defaults.max_running_pods})",
    )
    parser.add_argument(
        "--history-window",
        type=int,
        default=defaults.history_window,
        help="watch events kept for resourceVersion replays; older resourceVersions get 410 Expired "
        f"(default {defaults.history_window})",
    )
    parser.add_argument("--seed", type=int, help="seed of the fault dice until the first set_faults")
    return parser


def config_from_argv(argv: Sequence[str] | None = None) -> EmulatorConfig:
    """Parse the command line into an EmulatorConfig (ValueError naming a bad value)."""
    return EmulatorConfig(**vars(build_parser().parse_args(argv)))

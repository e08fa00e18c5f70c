"""``bucketrun stack run|up|down``: the whole local stack (``bucketrun.devtools.stack``) in one directory.

``run`` starts it in the foreground and stops it on Ctrl-C or SIGTERM. ``up`` starts ``run`` in the
background and returns once the stack is ready (``stack.env`` written), so scripts and ``make
stack-up`` can rely on it; ``down`` stops what ``up`` (or ``run``) started in that directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Final

from bucketrun.cli.common import EXIT_INVALID, EXIT_OK, Commands
from bucketrun.devtools.control_plane import ServersNotBuiltError
from bucketrun.devtools.stack import (
    ENV_FILE,
    LOG_FILE,
    StackError,
    StackOptions,
    StackState,
    alive,
    read_env,
    start_stack,
    stop_stack_dir,
)

DEFAULT_DIR: Final = ".bucketrun-stack"
UP_TIMEOUT: Final = 300.0
_SECRET_KEYS: Final = ("BUCKETRUN_STORAGE__SECRET_KEY",)

_DESCRIPTION = """\
The whole local stack on 127.0.0.1, built from source by `make servers`: a private RabbitMQ node,
MinIO (its bucket notifications wired to RabbitMQ), etcd, kube-apiserver (RBAC; ServiceAccount,
ResourceQuota and PodSecurity admission), kube-controller-manager, kube-scheduler and a node agent
that runs pods as local processes. The namespace `bucketrun` (PodSecurity restricted) holds
deploy/kubernetes' ServiceAccounts, Roles and RoleBindings.

Everything lives in one directory (--dir, default $STACK_DIR or ./.bucketrun-stack), emptied at each
start: each server's data and log, and STACK_DIR/stack.env, shell-sourceable KEY=value lines with
KUBECONFIG (an admin's), the BUCKETRUN_* settings of a dispatcher or watcher on this stack
(BUCKETRUN_CLUSTER__EXECUTOR=kubernetes) and STACK_* facts (console URL, node agent faults URL,
STACK_DISPATCHER_KUBECONFIG and STACK_WATCHER_KUBECONFIG: ServiceAccount tokens allowed only their
Roles).
"""

_EPILOG = """\
examples:
  bucketrun stack run                          foreground; Ctrl-C stops everything
  bucketrun stack up --dir /tmp/s              background; returns once ready
  set -a; . /tmp/s/stack.env; set +a           use it (kubectl: $STACK_KUBECTL get jobs -n bucketrun)
  bucketrun stack down --dir /tmp/s            stop everything it started
"""


class _Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: stop the stack (a BaseException so no ``except Exception`` eats it)."""


def add_commands(commands: Commands) -> None:
    """Add ``stack`` with ``run``, ``up`` and ``down``."""
    stack = commands.add_parser(
        "stack",
        help="run the whole local stack (RabbitMQ, MinIO, Kubernetes built from source, a node agent)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = stack.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="start it in the foreground, print its environment, stop it on Ctrl-C or SIGTERM",
        description="Start the stack in the foreground (`make stack`): print where each server runs and "
        "the stack.env to source, report a server that exits, and stop everything, newest first, on "
        "Ctrl-C or SIGTERM.",
    )
    up = actions.add_parser(
        "up",
        help="start it in the background; return once it is ready and DIR/stack.env is written",
        description="Start `bucketrun stack run` in the background (`STACK_DIR=D make stack-up`), its "
        "output in DIR/stack.log, and return once the stack is ready and DIR/stack.env is written (exit "
        "0), or when it failed or --timeout passed (exit 1, quoting the log). Refuses a DIR whose stack "
        "still runs.",
    )
    down = actions.add_parser(
        "down",
        help="stop everything the stack in DIR started",
        description="Stop the stack recorded in DIR/stack.json (`STACK_DIR=D make stack-down`): SIGTERM "
        "its supervisor, which stops every server in order, then kill whatever it recorded that still "
        "runs (also after the supervisor was killed). Removes stack.env; keeps the data and logs. Exit 0 "
        "also when nothing runs.",
    )
    for parser in (run, up, down):
        parser.add_argument(
            "--dir",
            type=Path,
            default=Path(os.environ.get("STACK_DIR") or DEFAULT_DIR),
            help="the stack's directory (default: $STACK_DIR, else %(default)s)",
        )
    for parser in (run, up):
        parser.add_argument(
            "--no-node",
            action="store_true",
            help="no node agent: pods are scheduled nowhere and stay Pending",
        )
        parser.add_argument(
            "--unsafe-no-fsync",
            action="store_true",
            help="etcd without fsync: faster, and a machine crash loses the cluster (for tests)",
        )
    up.add_argument(
        "--timeout",
        type=float,
        default=UP_TIMEOUT,
        help="seconds to wait for the stack (default %(default)s)",
    )
    run.set_defaults(handler=_run)
    up.set_defaults(handler=_up)
    down.set_defaults(handler=_down)


def _options(args: argparse.Namespace) -> StackOptions:
    return StackOptions(directory=args.dir.resolve(), node=not args.no_node, fsync=not args.unsafe_no_fsync)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _run(args: argparse.Namespace) -> tuple[str, int]:
    options = _options(args)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        stack = start_stack(options)
    except _Interrupted:
        return "interrupted while starting; everything started was stopped", EXIT_INVALID
    except (StackError, ServersNotBuiltError) as error:
        return f"error: {error}", EXIT_INVALID
    try:
        print(stack.summary())
        print(
            f"environment: {options.directory / ENV_FILE}  (set -a; . {options.directory / ENV_FILE}; set +a)"
        )
        print("running; Ctrl-C stops everything", flush=True)
        reported: set[str] = set()
        while True:
            time.sleep(1.0)
            for line in sorted(set(stack.exited()) - reported):
                print(f"exited: {line}", flush=True)
                reported.add(line)
    except _Interrupted as signal_name:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # the stop below runs to its end
        print(f"{signal_name}: stopping the stack ...", flush=True)
    stack.stop()
    return "stopped", EXIT_OK


def _up(args: argparse.Namespace) -> tuple[str, int]:
    options = _options(args)
    directory = options.directory
    state = StackState.read(directory)
    if state is not None and state.supervisor is not None and alive(state.supervisor):
        return (
            f"error: a stack already runs in {directory} (pid {state.supervisor}): "
            f"`bucketrun stack down --dir {directory}` first",
            EXIT_INVALID,
        )
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bucketrun.cli.main", "stack", "run", "--dir", str(directory)]
    argv += ["--no-node"] * args.no_node + ["--unsafe-no-fsync"] * args.unsafe_no_fsync
    log = directory / LOG_FILE
    with log.open("ab") as sink:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + args.timeout
    while not _ready(directory, child.pid):
        if child.poll() is not None:
            return f"error: the stack did not start; its log ({log}) ends:\n{_tail(log)}", EXIT_INVALID
        if time.monotonic() > deadline:
            child.send_signal(signal.SIGTERM)
            child.wait(120)
            return (
                f"error: the stack was not ready after {args.timeout:.0f} s; {log} ends:\n{_tail(log)}",
                EXIT_INVALID,
            )
        time.sleep(0.2)
    return _ready_text(directory, log), EXIT_OK


def _ready(directory: Path, supervisor: int) -> bool:
    """Whether *supervisor*'s stack wrote its state and then its stack.env (the last step of a start)."""
    state = StackState.read(directory)
    return state is not None and state.supervisor == supervisor and (directory / ENV_FILE).is_file()


def _ready_text(directory: Path, log: Path) -> str:
    env = read_env(directory / ENV_FILE)
    shown = "\n".join(f"  {key}={'(hidden)' if key in _SECRET_KEYS else value}" for key, value in env.items())
    return (
        f"stack ready in {directory} (log {log}); use it with\n"
        f"  set -a; . {directory / ENV_FILE}; set +a\n{shown}\n"
        f"stop it with: bucketrun stack down --dir {directory}"
    )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _down(args: argparse.Namespace) -> tuple[str, int]:
    directory = args.dir.resolve()
    done = stop_stack_dir(directory)
    return ("\n".join(done) if done else f"no stack runs in {directory}"), EXIT_OK

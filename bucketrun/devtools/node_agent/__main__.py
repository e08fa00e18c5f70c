"""`python -m bucketrun.devtools.node_agent`: run the node agent until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from bucketrun.devtools.node_agent.agent import DEFAULT_NODE_NAME, NodeAgent, NodeAgentOptions
from bucketrun.devtools.node_agent.api import ApiError, KubeconfigError
from bucketrun.devtools.node_agent.faults import Faults

_DESCRIPTION = """\
A kubelet stand-in for a local Kubernetes control plane: registers one Ready Node, renews its Lease
in kube-node-lease, runs the pods bound to it as local processes (images are ignored: each container's
command runs on this host, with its env, Secrets, ConfigMaps and volumes), writes their status as a
kubelet does, and serves their logs over HTTPS for `kubectl logs`.

The API server must reach the log server at 127.0.0.1:PORT: give it --kubelet-certificate-authority
(the CA that signed --tls-cert) and --kubelet-client-certificate/--kubelet-client-key signed by
--client-ca. Memory limits are enforced by sampling each container's RSS (no cgroups): over the limit,
the container is killed and reported OOMKilled (exit code 137).
"""

_EPILOG = """\
faults (also at run time with --control-port: GET/PUT http://127.0.0.1:PORT/faults, JSON body
{"unreachable": true, "failing_images": ["registry.invalid/*"], "config_errors": ["ns/pod-*"],
"oom": ["ns/pod-*"], "hold": false, "instant": false, "max_running": 0}; a PUT replaces only the
fields it names):
  unreachable     no Lease, node status, pod status or log serving: the node goes NotReady
  failing images  ErrImagePull, then ImagePullBackOff, for images matching a pattern
  config errors   CreateContainerConfigError, for as long as it stands, for pods matching namespace/name
  oom             running containers of pods matching namespace/name are OOM-killed
knobs the test suite drives (as the emulator's kubelet modes off, instant and max_running_pods):
  hold            bound pods are not started: they stay Pending until it is cleared
  instant         pods end at once without running, their containers with the exit code of the
                  annotation emulator.bucketrun.io/exit-code (default 0)
  max_running     at most this many pods run at once (0: no limit); the others wait Pending
GET http://127.0.0.1:PORT/state adds the counts of pods running and pending to the faults.

examples:
  python -m bucketrun.devtools.node_agent --kubeconfig D/admin.kubeconfig --workdir D/node \\
      --tls-cert D/kubelet.crt --tls-key D/kubelet.key --client-ca D/ca.crt --port 10250
  curl -X PUT -d '{"unreachable": true}' http://127.0.0.1:CONTROL_PORT/faults
"""


def parse_args(argv: list[str] | None = None) -> NodeAgentOptions:
    """The options from the command line (argparse exits with a message on bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m bucketrun.devtools.node_agent",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kubeconfig", type=Path, required=True, help="kubeconfig to reach the API server with"
    )
    parser.add_argument("--context", help="kubeconfig context (default: its current-context)")
    parser.add_argument(
        "--node-name", default=DEFAULT_NODE_NAME, help="the Node's name (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=10250,
        help="log server HTTPS port on 127.0.0.1, 0 for a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, required=True, help="log server certificate (PEM; IP SAN 127.0.0.1)"
    )
    parser.add_argument("--tls-key", type=Path, required=True, help="its private key (PEM)")
    parser.add_argument(
        "--client-ca", type=Path, help="require client certificates signed by this CA (the API server's)"
    )
    parser.add_argument(
        "--workdir", type=Path, required=True, help="pods' logs, volumes and scratch directories"
    )
    parser.add_argument("--cpu", help="allocatable cpu (default: this machine's cores)")
    parser.add_argument("--memory", help="allocatable memory, e.g. 8Gi (default: this machine's memory)")
    parser.add_argument("--pods", type=int, default=110, help="allocatable pods (default: %(default)s)")
    parser.add_argument(
        "--control-port",
        type=int,
        help="serve the fault control endpoint on this 127.0.0.1 port (0: a free one)",
    )
    parser.add_argument(
        "--max-grace-seconds", type=float, help="cap every grace period between SIGTERM and SIGKILL"
    )
    parser.add_argument("--lease-seconds", type=int, default=40, help="Lease duration (default: %(default)s)")
    parser.add_argument(
        "--renew-seconds", type=float, default=10.0, help="Lease renewal period (default: %(default)s)"
    )
    parser.add_argument("--unreachable", action="store_true", help="start with the unreachable fault")
    parser.add_argument(
        "--fail-image",
        action="append",
        default=[],
        metavar="PATTERN",
        help="image pattern whose pull fails (repeatable)",
    )
    parser.add_argument(
        "--config-error",
        action="append",
        default=[],
        metavar="NS/POD",
        help="pod pattern kept in CreateContainerConfigError (repeatable)",
    )
    parser.add_argument(
        "--oom",
        action="append",
        default=[],
        metavar="NS/POD",
        help="pod pattern whose containers are OOM-killed (repeatable)",
    )
    parser.add_argument(
        "--hold", action="store_true", help="start with the hold knob: bound pods are not started"
    )
    parser.add_argument(
        "--instant", action="store_true", help="start with the instant knob: pods end at once without running"
    )
    parser.add_argument(
        "--max-running", type=int, default=0, help="pods running at once (default: 0, no limit)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    for flag, value in (("--port", args.port), ("--pods", args.pods), ("--max-running", args.max_running)):
        if value < 0:
            parser.error(f"{flag} must not be negative, got {value}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return NodeAgentOptions(
        kubeconfig=args.kubeconfig,
        context=args.context,
        node_name=args.node_name,
        port=args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        workdir=args.workdir,
        cpu=args.cpu,
        memory=args.memory,
        pods=args.pods,
        control_port=args.control_port,
        max_grace_seconds=args.max_grace_seconds,
        lease_seconds=args.lease_seconds,
        renew_seconds=args.renew_seconds,
        faults=Faults(
            unreachable=args.unreachable,
            failing_images=tuple(args.fail_image),
            config_errors=tuple(args.config_error),
            oom=tuple(args.oom),
            hold=args.hold,
            instant=args.instant,
            max_running=args.max_running,
        ),
    )


async def serve(options: NodeAgentOptions) -> None:
    """Run the agent until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with NodeAgent(options) as agent:
        control = f"; faults at http://127.0.0.1:{agent.control_port}/faults" if agent.control_port else ""
        print(f"node {agent.node_name} ready; logs on https://127.0.0.1:{agent.port}{control}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; 2 when the kubeconfig, a certificate or the API server refuses the start."""
    options = parse_args(argv)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(options))
    except (KubeconfigError, ApiError, OSError, TimeoutError) as error:
        print(f"node agent: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The node agent: a kubelet stand-in that runs a real API server's pods as local processes.

For the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler built by
``make servers``), which has no container runtime. The agent registers one Ready Node, renews its
Lease, runs the pods the scheduler binds to it through the local executor's `LocalPodRunner` (images
are ignored: a container's `command` runs on this host), writes their status as a kubelet does, and
serves their logs over HTTPS so that `pods/log` and `kubectl logs` work through the API server. It
holds none of bucketrun's Job logic: Jobs, their pod failure policy and back-off are the real
controller manager's.

What it does, module by module:
- `node`: the Node (capacity/allocatable cpu, memory, pods; InternalIP 127.0.0.1;
  `daemonEndpoints.kubeletEndpoint.Port`), Ready heartbeats, the Lease in `kube-node-lease`;
- `pods`: one worker per pod — statuses, `activeDeadlineSeconds` (Failed, DeadlineExceeded), deletion
  with the deletion's grace period (SIGTERM, SIGKILL after it), then delete with grace 0 on the uid;
- `status`: the status document (phase, conditions, container states, exit codes and reasons);
- `refs`: the Secrets, ConfigMaps and PersistentVolumeClaims (with their bound PersistentVolumes) a
  pod references, fetched for the runner: a missing one keeps a container waiting
  (CreateContainerConfigError; ContainerCreating for a volume) until it is there, as on a kubelet;
- `memory`: memory limits enforced by an RSS watchdog (no cgroups): a container over its limit is
  SIGKILLed and reported OOMKilled, exit code 137;
- `logs`: `GET /containerLogs/{ns}/{pod}/{container}` (tailLines, limitBytes, timestamps, follow) and
  `/healthz`, TLS with the control plane's certificates, client certificates required given a CA;
- `faults`: unreachable, image pull failure, persistent config error, OOM;
- `leftovers`: containers a killed agent left running on the same workdir, killed at start.

Run it as a process::

    python -m bucketrun.devtools.node_agent --kubeconfig K --node-name N --port P \\
        --tls-cert C --tls-key K --client-ca CA --workdir D [--control-port 0]

or in-process (the stack and the tests)::

    agent = await start_node_agent(kubeconfig=K, workdir=D, tls_cert=C, tls_key=K, client_ca=CA, port=0)
    ...
    await agent.set_faults(unreachable=True)
    await agent.stop()

`NodeAgent(NodeAgentOptions(...))` is also an async context manager. Processes never import this
package: it is a developer tool.
"""

from bucketrun.devtools.node_agent.agent import (
    DEFAULT_NODE_NAME,
    NodeAgent,
    NodeAgentOptions,
    start_node_agent,
)
from bucketrun.devtools.node_agent.faults import Faults

__all__ = ["DEFAULT_NODE_NAME", "Faults", "NodeAgent", "NodeAgentOptions", "start_node_agent"]

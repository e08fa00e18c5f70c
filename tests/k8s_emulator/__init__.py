"""A Kubernetes API emulator over real HTTP for bucketrun's tests (kubernetes_asyncio talks to it unchanged).

It serves Jobs, Pods (with status and logs), ConfigMaps, Secrets, Leases and Namespaces with the
apiserver's semantics (etcd-like resourceVersions, watches with replay, bookmarks and 410 Expired,
optimistic concurrency, patches, garbage collection), runs a Job controller, and a kubelet that runs
pods as local processes through `dispatcher.executors.local.runner`. Faults (errors, latency, dropped,
stalled and expired watches) and request statistics are driven through `/_emulator/`. It is the tests'
fallback where the real control plane is not built, and serves only what those tests and `bench/` use.

    with run_emulator(tmp_path, kubelet="instant") as emulator:
        ...  # emulator.url, emulator.kubeconfig, emulator.control
"""

from tests.k8s_emulator.control import WRITE_VERBS, ControlError, EmulatorControl
from tests.k8s_emulator.process import EmulatorHandle, run_emulator

__all__ = [
    "WRITE_VERBS",
    "ControlError",
    "EmulatorControl",
    "EmulatorHandle",
    "run_emulator",
]

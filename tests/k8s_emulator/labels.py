"""Label, annotation and finalizer names the emulated controllers use, spelled once."""

from __future__ import annotations

# The Job controller's pod labels, as bucketrun's local executor writes them too.
from dispatcher.executors.local.status import job_pod_labels

__all__ = ["job_pod_labels"]

EXIT_CODE_ANNOTATION = "emulator.bucketrun.io/exit-code"
"""On a pod run by the `instant` kubelet: the exit code its containers "end" with (default 0)."""

NODE_NAME = "emulator-node"
POD_IP = "127.0.0.1"
HOST_IP = "127.0.0.1"

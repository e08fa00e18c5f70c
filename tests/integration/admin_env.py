"""The environment of a `bucketrun` command (services apply, api) run as a separate process against one
test's store, records bucket and namespace."""

from __future__ import annotations

import os

from tests.backends.kubernetes import KubeTestEnv
from tests.backends.s3 import S3Endpoint


def admin_env(endpoint: S3Endpoint, records: str, kube: KubeTestEnv, **extra: str) -> dict[str, str]:
    """This process's environment without its ``BUCKETRUN_*`` variables, plus the store, the records
    bucket and the cluster (kubernetes executor) of the test, plus *extra*."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("BUCKETRUN_")}
    return {
        **base,
        "BUCKETRUN_STORAGE__ENDPOINT": endpoint.endpoint,
        "BUCKETRUN_STORAGE__ACCESS_KEY": endpoint.access_key,
        "BUCKETRUN_STORAGE__SECRET_KEY": endpoint.secret_key,
        "BUCKETRUN_STORAGE__REGION": endpoint.region,
        "BUCKETRUN_STORAGE__SECURE": str(endpoint.secure).lower(),
        "BUCKETRUN_STORAGE__RECORDS_BUCKET": records,
        "BUCKETRUN_CLUSTER__EXECUTOR": "kubernetes",
        "BUCKETRUN_CLUSTER__NAMESPACE": kube.namespace,
        "BUCKETRUN_CLUSTER__KUBECONFIG": str(kube.kubeconfig),
        **extra,
    }

"""Service + event + grants in, checked Kubernetes manifests out: the Job and the per-service ConfigMap
rendered from ``job_templates/`` in a sandboxed, StrictUndefined Jinja2 environment (``render``), from a
context of plain values (``context``), each value escaped and each manifest checked (``manifest_checks``)."""

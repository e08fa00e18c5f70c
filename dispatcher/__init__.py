"""The dispatcher process and the layers both processes stand on, lowest first.

``domain`` (pure decisions, no I/O) < ``fdl`` (service definitions) < ``runtime`` (settings, logs,
metrics, probes, retries) < ``rendering`` (templates to checked manifests) < ``adapters`` (the only
code that imports aio_pika, kubernetes_asyncio and minio) < ``executors`` (where Jobs run) <
``process`` (the dispatcher) and ``poller``. The watcher (``watcher/``) uses these layers; nothing here
imports it. ``make lint`` enforces the order (import-linter, see pyproject.toml).
"""

__version__ = "0.1.0"

"""The roots above both processes: the CLI (``cli``), ``services apply|list|delete`` (``admin``),
``serve`` (dispatcher and watcher in one process) and the developer tools (``devtools``: the demo and
test-server launchers). Nothing in ``dispatcher/`` or ``watcher/`` imports this package."""

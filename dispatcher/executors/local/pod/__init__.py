"""Building blocks of the local pod runner (`dispatcher.executors.local.runner`), one job per module.

`model` holds the public value types, `spec` reads a Pod manifest into a checked plan, `expansion`,
`quantity` and `fields` are the pure Kubernetes rules, `environment` and `volumes` prepare what a
container sees, and `processes` owns the operating-system side (process groups, signals).
Import the public API from `dispatcher.executors.local.runner`, not from here.
"""

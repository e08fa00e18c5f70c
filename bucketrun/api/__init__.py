"""``bucketrun api``: an OSCAR-compatible HTTP API, so the unmodified ``oscar-cli`` manages bucketrun's
services. A process leaf: its routes parse and answer, the work is ``bucketrun.admin``'s."""

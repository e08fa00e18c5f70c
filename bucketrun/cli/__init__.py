"""The ``bucketrun`` command line (entry point ``bucketrun.cli.main:main``)."""

"""The stager's log lines: one plain line per step, to the container's stdout, with grants redacted.

The lines end up in the job records next to the script's own output, so they are written for the
service's user: what was downloaded, what was uploaded where, what was skipped and why.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from job_templates.stager.redact import Redactor

"""Event of the JSON line stage-out writes per uploaded object; the watcher reads them into records."""


class Reporter:
    """Writes ``<prefix>: <message>`` lines, passing each through a ``Redactor`` first."""

    def __init__(self, prefix: str, redactor: Redactor | None = None, stream: TextIO | None = None) -> None:
        """Lines start with ``prefix`` and go to ``stream`` (stdout when None, looked up at each line)."""
        self._prefix = prefix
        self.redactor = redactor or Redactor()
        self._stream = stream

    def __call__(self, message: str) -> None:
        """Write one line (newlines in ``message`` are flattened so a line stays a line)."""
        text = self.redactor(message).replace("\r", " ").replace("\n", " ")
        stream = self._stream or sys.stdout
        stream.write(f"{self._prefix}: {text}\n")
        stream.flush()

    def event(self, name: str, **fields: str | int) -> None:
        """Write one machine-readable JSON line (the watcher reads these from the logs, e.g. the
        ``uploaded`` events that become a record's output keys)."""
        text = self.redactor(json.dumps({"event": name, **fields}, ensure_ascii=False))
        stream = self._stream or sys.stdout
        stream.write(text.replace("\r", " ").replace("\n", " ") + "\n")
        stream.flush()

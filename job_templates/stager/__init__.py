"""In-pod staging: the pieces behind ``python -m job_templates.stager in|out`` (``main.py``).

Modules, one job each: ``config`` (the stager's environment), ``exit_codes``, ``redact`` and ``report``
(log lines without grants), ``paths`` (which files, under which keys, safely), ``completion`` (when has
the run container ended), ``multipart`` (the POST form), ``transfer`` (HTTP with bounded retries), and
``stage_in`` / ``stage_out`` (the two stages).
"""

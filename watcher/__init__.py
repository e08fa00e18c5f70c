"""The watcher process: finished Jobs recorded (status, logs, outputs), published and marked, once per UID.

Uses the layers below it in ``dispatcher/``; nothing there imports this package.
"""

"""The Kubernetes adapter's per-event JSON: create bodies (``json_body``) and watch lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from dispatcher.adapters.kube.api import json_body
from dispatcher.adapters.kube.watching import _watch_events
from dispatcher.domain.errors import TransientError

JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "upper-0a1b2c", "labels": {"bucketrun.io/service": "upper"}},
    "spec": {
        "backoffLimit": 0,
        "suspend": False,
        "template": {
            "spec": {
                "containers": [
                    {"name": "run", "args": ["in/ünïcode ✓.txt", '"quoted"\n'], "env": [{"name": "X"}]}
                ],
                "nodeSelector": None,
            }
        },
    },
}


def test_a_job_body_reads_back_as_the_same_document() -> None:
    body = json_body(JOB)
    assert json.loads(body) == JOB
    # Compact, UTF-8: the text json writes with these options, byte for byte.
    assert body == json.dumps(JOB, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "doc",
    [
        {1: "a key that is not a string"},
        {"big": 1 << 70},
        {"key": "a lone surrogate \ud800"},
    ],
)
def test_what_orjson_refuses_is_written_by_json_as_before(doc: dict[Any, Any]) -> None:
    with pytest.raises(TypeError):
        orjson.dumps(doc)
    assert json_body(doc) == json.dumps(doc, separators=(",", ":")).encode()


class _Content:
    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for line in self._lines:
            yield line


class _Response:
    def __init__(self, lines: list[bytes]) -> None:
        self.content = _Content(lines)


async def _events(lines: list[bytes]) -> list[Any]:
    stream = _watch_events(_Response(lines), "watch Jobs in ns", 30.0)  # type: ignore[arg-type]
    return [event async for event in stream]


async def test_watch_lines_become_events_and_blank_lines_are_skipped() -> None:
    added = {"type": "ADDED", "object": JOB}
    lines = [json.dumps(added).encode() + b"\n", b"\n", b'{"type":"BOOKMARK","object":{}}\r\n']
    assert await _events(lines) == [added, {"type": "BOOKMARK", "object": {}}]


@pytest.mark.parametrize("line", [b'{"type": "ADDED", "object": \n', b"[1, 2]\n", b"\xff\xfe\n"])
async def test_an_unreadable_watch_line_is_a_transient_error(line: bytes) -> None:
    with pytest.raises(TransientError, match="watch Jobs in ns"):
        await _events([line])

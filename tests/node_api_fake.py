"""A stand-in for the node agent's `ApiClient` in unit tests: GETs answered from a dict of objects."""

from __future__ import annotations

from typing import Any

from bucketrun.devtools.node_agent.api import ApiError


class ObjectsApi:
    """Answers GETs from *objects* (API path -> object) and records each path asked; 404 otherwise."""

    def __init__(self, objects: dict[str, dict[str, Any]] | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = objects if objects is not None else {}
        self.calls: list[str] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        """The object at *path*, or ApiError 404."""
        self.calls.append(path)
        if path not in self.objects:
            raise ApiError(404, "NotFound", f"{path} not found")
        return self.objects[path]

"""bucketrun.api.plain_errors: the framework's own errors answered in plain text, as OSCAR's are."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from bucketrun.api.plain_errors import register_plain_errors


class Body(BaseModel):
    name: str


def client() -> TestClient:
    app = FastAPI()

    @app.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {"name": body.name}

    register_plain_errors(app)
    return TestClient(app)


def test_a_body_that_is_not_utf8_is_400_in_plain_text() -> None:
    answer = client().post(
        "/things", content=b'{"name": "\xff"}', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "There was an error parsing the body"


def test_unknown_paths_and_methods_are_plain_text_and_a_405_keeps_allow() -> None:
    http = client()
    missing = http.get("/nothing")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    assert missing.headers["content-type"].startswith("text/plain")
    wrong = http.delete("/things")
    assert (wrong.status_code, wrong.text) == (405, "Method Not Allowed")
    assert wrong.headers["allow"] == "POST"

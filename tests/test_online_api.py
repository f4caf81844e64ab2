"""The service's HTTP surface: every operation in the OpenAPI document, fuzzed by schemathesis
(bounded examples) without a single 5xx; bodies that are not JSON get a 4xx."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES = {"POST /score": 6, "POST /events": 6}  # the rest: 4 each (GET/DELETE are cheap)


@pytest.fixture()
def client(trained_bundle: Any, asgi_client: Callable[..., Any], tmp_path: Path) -> Any:
    return asgi_client(trained_bundle.bundle_dir, JOURNEY_ML_PROFILES=str(tmp_path / "profiles"))


def test_openapi_documents_every_route_with_examples(client: Any) -> None:
    spec = client.get("/docs.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    routes = {
        ("POST", "/score"), ("POST", "/events"), ("POST", "/reload"), ("GET", "/improvements"),
        ("GET", "/metadata"), ("DELETE", "/customers/{customer_id}"), ("GET", "/readyz"),
    }  # fmt: skip
    assert routes <= documented
    for method, path in routes - {("GET", "/readyz")}:
        op = spec["paths"][path][method.lower()]
        assert op.get("description") or op.get("summary"), (method, path)
    for path in ("/improvements", "/metadata"):
        ok = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert "example" in ok or "examples" in ok, path


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain"]
)
def test_a_body_that_is_not_json_is_a_4xx_naming_content_type(client: Any, content_type: str) -> None:
    body = b'--x\r\nContent-Disposition: form-data; name="customers"\r\n\r\n[]\r\n--x--\r\n'
    for path in ("/score", "/events", "/reload"):
        resp = client.post(path, content=body, headers={"Content-Type": content_type})
        assert resp.status_code == 415, (path, resp.text)
        assert resp.json()["field"] == "Content-Type"


def test_schemathesis_finds_no_server_error_in_any_operation(client: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/docs.json", client.app)
    failures: list[tuple[str, int, str]] = []
    seen: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        seen.append(op.label)

        @settings(
            max_examples=EXAMPLES.get(op.label, 4), deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            resp = case.call()
            if resp.status_code >= 500:
                failures.append((case.operation.label, resp.status_code, resp.text[:300]))

        check()
    assert {"POST /score", "POST /events", "GET /improvements", "DELETE /customers/{customer_id}"} <= set(seen)
    assert not failures, failures[:3]

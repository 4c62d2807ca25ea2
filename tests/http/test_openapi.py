"""voxlab/http/openapi.json: valid JSON, OpenAPI 3, and exactly the routes the server serves.

The router of the management API is built as the server builds it (``Api.install`` on a
``JsonRouter``, with a stub engine: installing touches nothing of it), and its
``routes()`` must be the document's /api paths and methods, one for one: a route added
to the code without its documentation, or documented and gone, fails here. The document
is also served, without a token, at /api/openapi.json by a live server.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from voxlab.http.api import OPENAPI_PATH, Api
from voxlab.http.jsonapi import JsonRouter

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PARAM = re.compile(r"\{(\w+)\}")
# Documented for completeness, served outside the JSON router (their own resources).
NOT_ROUTER_PATHS = {"/metrics", "/request/{session_id}/{secret}"}


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def _router_routes() -> set[tuple[str, str]]:
    router = JsonRouter(lambda: "token")
    Api(engine=object(), directory=None, data_dir=None).install(router)
    return {(method.upper(), pattern) for method, pattern in router.routes()}


def _doc_routes(doc: dict, api_only: bool = True) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in METHODS
            if not api_only or path not in NOT_ROUTER_PATHS}


def _shape(pattern: str) -> str:
    """A path with its parameters unnamed: /api/users/{name} -> /api/users/{}."""
    return PARAM.sub("{}", pattern)


def test_the_document_is_openapi_3(doc):
    assert re.fullmatch(r"3\.\d+\.\d+", doc["openapi"]), doc["openapi"]
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["paths"]
    assert doc["components"]["schemas"]["Error"] == {
        **doc["components"]["schemas"]["Error"],
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def test_its_paths_and_methods_are_exactly_the_routes_served(doc):
    served, documented = _router_routes(), _doc_routes(doc)
    assert served, "Api.install installed no route"
    # Compared by shape first, so a renamed parameter is told apart from a missing route.
    assert {(m, _shape(p)) for m, p in documented} == {(m, _shape(p)) for m, p in served}
    assert documented == served, "the parameter names differ between the code and the document"
    assert {p for p in doc["paths"] if p in NOT_ROUTER_PATHS} == NOT_ROUTER_PATHS


def test_every_path_parameter_is_declared_and_every_declared_one_is_in_the_path(doc):
    for path, item in doc["paths"].items():
        in_path = set(PARAM.findall(path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            params = [*item.get("parameters", []), *operation.get("parameters", [])]
            declared = {p["name"] for p in params if p.get("in") == "path"}
            assert declared == in_path, f"{method.upper()} {path}: path parameters {declared}"
            assert all(p.get("required") for p in params if p.get("in") == "path")


def test_every_route_but_the_document_needs_the_bearer_token(doc):
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    global_security = doc.get("security", [])
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            security = operation.get("security", global_security)
            needs_token = path.startswith("/api/") and path != "/api/openapi.json"
            if needs_token:
                assert security == [{"bearerAuth": []}], f"{method.upper()} {path}"
                assert "401" in operation["responses"], f"{method.upper()} {path}"
            else:
                assert security == [], f"{method.upper()} {path} must need no token"


def test_the_history_query_parameters_are_documented(doc):
    params = {p["name"]: p for p in doc["paths"]["/api/history"]["get"]["parameters"]}
    assert set(params) == {"since", "until", "scenario", "reason", "custom_data", "limit", "offset"}
    assert all(p["in"] == "query" for p in params.values())
    assert params["limit"]["schema"]["maximum"] == 1000


def test_every_reference_resolves_and_every_error_answer_is_the_error_schema(doc):
    def walk(node, where):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.startswith("#/"), where
                target = doc
                for part in ref[2:].split("/"):
                    assert part in target, f"{where}: {ref} does not resolve"
                    target = target[part]
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")
    walk(doc, "#")

    responses = doc["components"]["responses"]
    for path, item in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status, answer in operation["responses"].items():
                if not status.startswith(("4", "5")) or status == "416":
                    continue
                if "$ref" in answer:
                    answer = responses[answer["$ref"].rsplit("/", 1)[1]]
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}"


def test_a_live_server_serves_it_without_a_token(server):
    with urllib.request.urlopen(server.http_url + "/api/openapi.json", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        body = resp.read()
    assert json.loads(body) == json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))

"""An OpenAPI 3.1 description of the REST API, served at /api/openapi.json.

Paths and methods come from the routes themselves, the summary from each handler's docstring,
and request bodies from the msgspec structs the handlers decode, so the description cannot
drift from what the server accepts. docs/api.md remains the reference for who may call what.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from masklog.domain.events import Event
from masklog.server import api
from masklog.server.exchange.formats import DEFAULT_FORMAT, FORMATS
from masklog.server.exchange.routes import routes as exchange_routes
from masklog.server.protocol import Snapshot
from masklog.server.work_routes import routes as work_routes

# The JSON body each writing route takes.
REQUEST_BODIES: dict[tuple[str, str], type] = {
    ("/api/projects", "POST"): api.NewProject,
    ("/api/projects/{project}/classes", "POST"): api.NewClass,
    ("/api/projects/{project}/members/{user}", "PUT"): api.Membership,
    ("/api/media/{media}/commands", "POST"): api.CommandRequest,
}
RESPONSES: dict[tuple[str, str], type] = {
    ("/api/media/{media}", "GET"): api.MediaAdded,
    ("/api/media/{media}/snapshot", "GET"): Snapshot,
}
PUBLIC = {"/api/health", "/api/openapi.json"}
# The query parameters of reading routes (integers; `from`/`to` an inclusive window of frames,
# at most MAX_LABEL_WINDOW of them, cut to the media item's frames).
QUERY_PARAMETERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("/api/media/{media}/labels", "GET"): ("frame", "seq", "from", "to"),
    ("/api/media/{media}/snapshot", "GET"): ("seq", "from", "to"),
}


def describe(routes: list[Route]) -> dict[str, Any]:
    types = [*REQUEST_BODIES.values(), *RESPONSES.values(), Event, api.MediaForm]
    _, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for route in routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            operation_id = base = f"{route.name}_{method.lower()}"
            number = 1
            while operation_id in taken:  # one handler on two paths (revoking one token or all)
                number += 1
                operation_id = f"{base}_{number}"
            taken.add(operation_id)
            operation: dict[str, Any] = {
                "summary": (route.endpoint.__doc__ or route.name).strip().splitlines()[0],
                "operationId": operation_id,
                "parameters": [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in re.findall(r"\{(\w+)\}", path)
                ],
                "responses": {"default": {"description": 'JSON; errors are {"error": {"code", "message"}}'}},
            }
            if path not in PUBLIC:
                operation["security"] = [{"bearer": []}]
            operation["parameters"] += [
                {"name": name, "in": "query", "required": False, "schema": {"type": "integer"}} for name in QUERY_PARAMETERS.get((path, method), ())
            ]
            body = REQUEST_BODIES.get((path, method))
            if body is not None:
                operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
            if (path, method) == ("/api/projects/{project}/media", "POST"):
                operation["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
                    "allOf": [{"$ref": "#/components/schemas/MediaForm"}],
                    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }}}}
            answer = RESPONSES.get((path, method))
            if answer is not None:
                operation["responses"]["200"] = {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{answer.__name__}"}}}}
            if (path, method) == ("/api/media/{media}/import", "POST"):
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": {"type": "object", "description": "a COCO instance file"}},
                    "multipart/form-data": {"schema": {"properties": {"file": {"type": "string", "format": "binary"}}}},
                }}
            if path.endswith("/export"):
                operation["parameters"] += [_format_parameter()] + [
                    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                    for name in ("media", "proposals", "first", "last", "seq", "masks", "images")
                ]
            if path.endswith("/frames/{index}"):
                operation["responses"]["200"] = {"description": "the frame", "content": {"image/jpeg": {}}}
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "masklog", "version": "1", "description": "Event-sourced collaborative label server. The live socket is described in docs/protocol.md."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _format_parameter() -> dict[str, Any]:
    """The export's `format`, one of the registry's names (server/exchange/formats.py)."""
    return {
        "name": "format",
        "in": "query",
        "required": False,
        "description": "; ".join(f"{name}: {writer.summary} ({writer.media_type})" for name, writer in FORMATS.items()),
        "schema": {"type": "string", "enum": list(FORMATS), "default": DEFAULT_FORMAT},
    }


async def openapi(request: Request) -> Response:
    """This description."""
    return Response(msgspec.json.encode(describe([*api.routes, *exchange_routes, *work_routes])), media_type="application/json")

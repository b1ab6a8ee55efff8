"""The REST edge (server/requests.py) on a small app of its own, served by a real uvicorn on
127.0.0.1: parameters and bodies within their limits, and the JSON errors for the rest. The
routes that use these helpers are tested through the real server in test_api, test_bad_input
and test_costly_input."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from masklog.domain.limits import MAX_JSON_DEPTH
from masklog.server.requests import ApiError, endpoint, error_response, int_param, json_response, read_bytes, read_form, read_json
from tests.server.rest import MULTIPART, multipart

LIMIT = 64
JSON_LIMIT = 1024  # room for JSON nested past MAX_JSON_DEPTH


class Point(msgspec.Struct, forbid_unknown_fields=True):
    x: int
    y: int


def answering(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """What `endpoint` does with an ApiError, without its sign-in (which needs a whole server)."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error.status, error.code, error.message)

    return run


@answering
async def number(request: Request) -> Response:
    return json_response({"n": int_param(request, "n", default=5, minimum=1, maximum=10)})


@answering
async def raw(request: Request) -> Response:
    return json_response({"length": len(await read_bytes(request, LIMIT, "thing"))})


@answering
async def point(request: Request) -> Response:
    return json_response(await read_json(request, Point, JSON_LIMIT))


@answering
async def form(request: Request) -> Response:
    data = await read_form(request, 400, "upload", max_files=1, max_fields=2)
    names = sorted(data.keys())
    await data.close()
    return json_response({"parts": names})


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    app = Starlette(routes=[Route("/number", number), Route("/raw", raw, methods=["POST"]), Route("/point", point, methods=["POST"]), Route("/form", form, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_int_param_gives_the_default_or_a_bounded_integer(http):
    assert http.get("/number").json() == {"n": 5}
    assert http.get("/number", params={"n": "10"}).json() == {"n": 10}
    assert error_of(http.get("/number", params={"n": "ten"})) == (422, "invalid_request", "n must be an integer, not 'ten'")
    assert error_of(http.get("/number", params={"n": "0"})) == (422, "invalid_request", "n must be at least 1")
    assert error_of(http.get("/number", params={"n": "11"})) == (422, "invalid_request", "n must be at most 10")


def chunked(total: int) -> Iterator[bytes]:
    """A body without Content-Length, sent in pieces: only its bytes tell how long it is."""
    for start in range(0, total, 16):
        yield b"x" * min(16, total - start)


def test_a_body_is_read_up_to_its_limit_and_refused_past_it(http):
    assert http.post("/raw", content=b"x" * LIMIT).json() == {"length": LIMIT}
    assert http.post("/raw", content=chunked(LIMIT)).json() == {"length": LIMIT}
    over = (413, "too_large", f"thing over {LIMIT} bytes")
    assert error_of(http.post("/raw", content=b"x" * (LIMIT + 1))) == over, "by its Content-Length"
    assert error_of(http.post("/raw", content=chunked(LIMIT + 1))) == over, "as it passes the limit"


def test_a_json_body_is_decoded_checked_and_bounded(http):
    assert http.post("/point", content=b'{"x": 1, "y": 2}').json() == {"x": 1, "y": 2}
    assert error_of(http.post("/point", content=b'{"x": 1'))[:2] == (400, "malformed_json")
    assert error_of(http.post("/point", content=b'{"x": 1, "y": "2"}'))[:2] == (422, "invalid_request")
    assert error_of(http.post("/point", content=b"\xff\xfe"))[:2] == (400, "malformed_json")
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    assert error_of(http.post("/point", content=deep)) == (422, "too_deep", f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    nested = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH  # deep enough, but not a point
    assert error_of(http.post("/point", content=nested))[:2] == (422, "invalid_request")
    padded = b'{"x": 1, "y": 2, "pad": "' + b" " * JSON_LIMIT + b'"}'
    assert error_of(http.post("/point", content=padded)) == (413, "too_large", f"request body over {JSON_LIMIT} bytes")


def test_a_multipart_body_is_parsed_within_its_limits(http):
    body = multipart({"id": "a"}, [("f.bin", b"data")])
    assert http.post("/form", content=body, headers={"content-type": MULTIPART}).json() == {"parts": ["file", "id"]}
    assert error_of(http.post("/form", content=b"not multipart at all", headers={"content-type": MULTIPART}))[:2] == (400, "malformed_upload")
    two_files = multipart({}, [("a.bin", b"1"), ("b.bin", b"2")])
    assert error_of(http.post("/form", content=two_files, headers={"content-type": MULTIPART}))[:2] == (400, "malformed_upload")
    big = multipart({}, [("f.bin", b"x" * 400)])
    assert error_of(http.post("/form", content=big, headers={"content-type": MULTIPART})) == (413, "too_large", "upload over 400 bytes")


def test_endpoint_keeps_the_handlers_name_and_summary():
    """The OpenAPI description names and summarises each route from these."""

    async def list_things(request: Request, ctx: object, user: object) -> Response:
        """All the things."""
        return json_response([])

    wrapped = endpoint(list_things)  # type: ignore[arg-type]
    assert wrapped.__name__ == "list_things" and wrapped.__doc__ == "All the things."
    assert Route("/things", wrapped).name == "list_things"

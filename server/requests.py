"""The REST edge every route module shares: authenticating a request, answering errors as
JSON, and reading its parameters and bodies within their limits.

`server/api.py` and `server/exchange/routes.py` are built from these; a new route module should
be too, so that every route answers a bad request the same way (docs/api.md, Errors).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from masklog.domain.decide import DomainError, ErrorCode
from masklog.domain.events import MediaAdded, ProjectCreated
from masklog.domain.limits import INT64_MAX, MAX_JSON_DEPTH, json_depth_over
from masklog.server.accounts import AccountError, User
from masklog.server.authorization import Forbidden
from masklog.server.context import Context
from masklog.server.ledger import LedgerError
from masklog.server.limits import LimitExceeded, retry_after_header
from masklog.server.media import MediaError
from masklog.server.shared_ledger import Contended

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """A refused request: answered with `status` and `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


STATUS_OF_DOMAIN_ERROR = {
    ErrorCode.UNKNOWN: 404,
    ErrorCode.EXISTS: 409,
    ErrorCode.NOT_ALLOWED: 403,
}


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


# ---- the wrapper every authenticated route goes through ------------------------------------------

Handler = Callable[[Request, Context, User], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, run, and turn every expected failure into a JSON error."""

    @functools.wraps(handler)  # its name and docstring name the route in the OpenAPI description
    async def run(request: Request) -> Response:
        ctx: Context = request.app.state.ctx
        token = _token(request)
        user = await ctx.accounts.authenticate(token)
        if user is None:
            return error_response(401, "unauthorized", "unknown or missing token")
        try:
            return await handler(request, ctx, user)
        except ApiError as error:
            return error_response(error.status, error.code, error.message)
        except Forbidden as error:
            return error_response(403, "forbidden", str(error))
        except DomainError as error:
            return error_response(STATUS_OF_DOMAIN_ERROR.get(error.code, 422), error.code.value, error.message)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return error_response(422, "invalid_request", str(error))
        except MediaError as error:
            return error_response(error.status, error.code, str(error))
        except AccountError as error:
            return error_response(422, "invalid_request", str(error))
        except LimitExceeded as error:
            return json_response({"error": {"code": error.code, "message": error.message}}, error.status, retry_after_header(error))
        except Contended as error:  # other server processes kept writing to the same media item
            return error_response(409, "conflict", str(error))
        except LedgerError as error:  # the log refused the append, or refuses changes altogether
            return error_response(503, "unavailable", str(error))

    return run


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if request.method == "GET":
        return request.query_params.get("token")
    return None


# ---- what a path names, as the caller may see it -------------------------------------------------


def visible_media(ctx: Context, user: User, media_id: str) -> MediaAdded:
    media = ctx.ledger.base.media.get(media_id)
    if media is None or ctx.accounts.role_in(user, media.project) is None:
        # Another project's media looks exactly like a missing one.
        raise ApiError(404, "unknown_id", f"unknown media {media_id!r}")
    return media


def visible_project(ctx: Context, user: User, project_id: str) -> ProjectCreated:
    project = ctx.ledger.base.projects.get(project_id)
    if project is None or ctx.accounts.role_in(user, project_id) is None:
        raise ApiError(404, "unknown_id", f"unknown project {project_id!r}")
    return project


# ---- parameters -----------------------------------------------------------------------------------


def int_param(request: Request, name: str, default: int | None = None, minimum: int = 0, maximum: int = INT64_MAX) -> int | None:
    """An integer query parameter in minimum..maximum; the default maximum is what SQLite (and
    every position in the log) can hold."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid_request", f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ApiError(422, "invalid_request", f"{name} must be at least {minimum}")
    if value > maximum:
        raise ApiError(422, "invalid_request", f"{name} must be at most {maximum}")
    return value


def frame_param(request: Request, name: str, media: MediaAdded) -> int:
    """A frame index from the path: an integer in 0..frames-1, else a JSON error (the path
    accepts any text so a bad index gets the API's error format, not the router's)."""
    raw = request.path_params[name]
    try:
        index = int(raw)
    except ValueError:
        raise ApiError(422, "invalid_request", f"frame index must be an integer, not {raw!r}") from None
    if not 0 <= index < media.frames:
        raise ApiError(404, "frame_out_of_range", f"frame {index} is out of range: media {media.media!r} has frames 0..{media.frames - 1}")
    return index


# ---- bodies, never read past their limit ----------------------------------------------------------


class BodyTooLarge(Exception):
    """Raised by a `limited` request's body once it passes its limit."""


def limited(request: Request, limit: int) -> Request:
    """The request with a body that stops being read past `limit` bytes (chunked uploads have no
    Content-Length to check up front)."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge()
        return message

    return Request(request.scope, receive)


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "too_large", f"{what} over {limit} bytes")


def refuse_declared_over(request: Request, limit: int, what: str) -> None:
    """Refuse a body whose Content-Length is over `limit` before any of it is read."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(what, limit)


async def read_bytes(request: Request, limit: int, what: str) -> bytearray:
    """The raw body, refused (413, `"<what> over <limit> bytes"`) as soon as it passes `limit`."""
    refuse_declared_over(request, limit, what)
    data = bytearray()
    try:
        async for chunk in limited(request, limit).stream():
            data += chunk
    except BodyTooLarge:
        raise _too_large(what, limit) from None
    return data


async def read_form(request: Request, limit: int, what: str, *, max_files: int, max_fields: int) -> FormData:
    """A multipart body of at most `limit` bytes (413 past it, 400 when the parser refuses it)."""
    refuse_declared_over(request, limit, what)
    try:
        return await limited(request, limit).form(max_files=max_files, max_fields=max_fields)
    except BodyTooLarge:
        raise _too_large(what, limit) from None
    except Exception as error:  # the multipart parser's own errors
        raise ApiError(400, "malformed_upload", f"cannot read the upload: {error}") from None


async def read_json(request: Request, type_: type, limit: int) -> Any:
    """A JSON body decoded as `type_`, at most `limit` bytes (routes pass
    `Settings.max_request_bytes`) and nested at most MAX_JSON_DEPTH levels."""
    data = await read_bytes(request, limit, "request body")
    if json_depth_over(data):
        raise ApiError(422, "too_deep", f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as error:
        raise ApiError(422, "invalid_request", str(error)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # msgspec checks UTF-8 only as it makes a str
        raise ApiError(400, "malformed_json", f"not valid JSON: {error}") from None
    except RecursionError:  # not past the depth check, but the stack may be deeper here
        raise ApiError(422, "too_deep", "JSON nested too deep") from None

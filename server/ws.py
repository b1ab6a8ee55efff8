"""One WebSocket per client and media item: the asyncio adapter around `server.protocol`.

Two tasks per socket: this one reads client messages (commands, presence), a sender drains the
subscriber queue. Close codes: 4001 unauthorised (also: token revoked or expired while open),
4003 forbidden (Host or Origin not this server's; membership removed while open), 4004 unknown
media, 4008 fell behind or stopped reading (resume from your last seq), 1009 message far over
the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from domain.decide import DomainError, Scope
from domain.events import Event, media_stream, project_stream
from domain.precheck import is_costly, precheck
from server import protocol as p
from server.accounts import User
from server.authorization import Forbidden, authorize_on_media
from server.context import Context
from server.hub import Overflowed, Subscriber
from server.ledger import LedgerError
from server.limits import LimitExceeded
from server.presence import Seat
from server.sessions import Session
from server.settings import Settings

log = logging.getLogger("masklog.ws")

HELLO_TIMEOUT_S = 10.0


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, lower-case, with the scheme's default port
    filled in; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    host = f"[{host}]" if ":" in host else host.lower()
    return scheme, host, port or DEFAULT_PORTS[scheme]


def host_allowed(host_header: str | None, local: tuple[str, int] | None, settings: Settings) -> str | None:
    """The Host header names this server: one of its public origins, or, on the port the
    connection arrived on, a loopback name, the configured bind host or the address the
    connection arrived on. A DNS-rebinding page's requests carry its own name and fail here.
    Returns how it was allowed ('public' or 'local'), or None."""
    if not host_header:
        return None
    try:
        explicit_port = urlsplit(f"http://{host_header}").port
    except ValueError:
        return None
    named = _origin(f"http://{host_header}")
    if named is None:
        return None
    _, host, port = named
    for public in settings.public_origins:
        own = _origin(public)
        # A Host without a port means the default port of the scheme the client used.
        if own is not None and own[1] == host and own[2] == (explicit_port or DEFAULT_PORTS[own[0]]):
            return "public"
    if local is None or port != local[1]:
        return None
    local_host = f"[{local[0]}]" if ":" in local[0] else local[0]
    own_names = {*LOOPBACK_NAMES, local_host.lower()}
    if settings.host not in ("0.0.0.0", "::", ""):
        own_names.add(f"[{settings.host}]" if ":" in settings.host else settings.host.lower())
    return "local" if host in own_names else None


def origin_allowed(websocket: WebSocket, settings: Settings) -> bool:
    """Browsers always send Origin; it must be this server as its Host names it (plain http:
    this server speaks no TLS itself), one of its public origins, or one of `allowed_origins`.
    Programs that send none are let through (with a valid Host): Origin is a defence against
    other web pages, and the token still decides who may do what."""
    host = host_allowed(websocket.headers.get("host"), websocket.scope.get("server"), settings)
    if host is None:
        return False
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if origin in settings.allowed_origins:
        return True
    sent = _origin(origin)
    if sent is None:
        return False
    if any(_origin(public) == sent for public in settings.public_origins):
        return True
    # Reached directly (not through a public origin): the page came from this server over http.
    return host == "local" and sent == _origin(f"http://{websocket.headers.get('host', '')}")


async def media_socket(websocket: WebSocket) -> None:
    ctx: Context = websocket.app.state.ctx
    media_id = websocket.path_params["media"]
    await websocket.accept()
    if not origin_allowed(websocket, ctx.settings):
        # Accepted, then closed at once: a browser sees 4003 (a refused handshake shows as 1006).
        await websocket.close(code=4003, reason="host or origin not allowed")
        return
    try:
        await _serve(ctx, websocket, media_id)
    except WebSocketDisconnect:
        pass
    except TooSlow:
        log.info("socket for media %s closed: the client stopped reading", media_id)
        await _give_up(websocket)
    except Exception:  # the server keeps serving whatever one socket did
        log.exception("socket for media %s failed", media_id)
        with contextlib.suppress(Exception):
            await websocket.close(code=1011)


class TooSlow(Exception):
    """The client did not take a message within the send timeout."""


async def _send(websocket: WebSocket, message: p.ServerMessage) -> None:
    # The reader (acks) and the pump (events) both send; one lock per socket keeps whole
    # messages from interleaving. A client that stops reading makes the send wait once the
    # buffers are full; past the timeout the socket is given up (see `_give_up`).
    lock = websocket.scope.setdefault("masklog.send_lock", asyncio.Lock())
    timeout = websocket.app.state.ctx.settings.send_timeout_s
    async with lock:
        try:
            await asyncio.wait_for(websocket.send_text(p.encode(message).decode()), timeout)
        except TimeoutError:
            raise TooSlow() from None


# Longer than the websockets library's own closing handshake timeout (10 s), after which it drops
# the connection and its unsent data: cutting the close short would leave that to the peer.
CLOSE_BOUND_S = 60.0


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close from the server's side. The close frame may wait behind whatever the client has not
    read; the server drops the connection when the closing handshake times out."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), CLOSE_BOUND_S)


async def _give_up(websocket: WebSocket) -> None:
    """Close a socket whose client stopped reading; it resumes from its last seq if it ever
    comes back."""
    await _close(websocket, 4008, "too slow: resume from your last seq")


async def _reply(websocket: WebSocket, message: p.ServerMessage) -> None:
    """Answer a command; the client may have gone meanwhile (its event is in the log all the
    same, and a retry with the same id gets the same answer)."""
    with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, RuntimeError, TooSlow):
        await _send(websocket, message)


async def _receive(websocket: WebSocket) -> str | bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message.get("text") if message.get("text") is not None else (message.get("bytes") or b"")


async def _serve(ctx: Context, websocket: WebSocket, media_id: str) -> None:
    limit = ctx.settings.max_message_bytes
    try:
        hello = p.parse(await asyncio.wait_for(_receive(websocket), HELLO_TIMEOUT_S), limit)
    except TimeoutError:
        await websocket.close(code=4001, reason="no hello")
        return
    except p.ProtocolError as error:
        await _send(websocket, p.Error(code=error.code, message=error.message))
        await websocket.close(code=4002, reason="bad hello")
        return
    if not isinstance(hello, p.Hello):
        await _send(websocket, p.Error(code="hello_expected", message="the first message must be a hello"))
        await websocket.close(code=4002, reason="hello expected")
        return
    credential = await ctx.accounts.credential(hello.token)
    if credential is None:
        await _send(websocket, p.Error(code="unauthorized", message="unknown or missing token"))
        await websocket.close(code=4001, reason="unauthorized")
        return
    user = credential.user
    state = ctx.ledger.state
    media = state.media.get(media_id)
    if media is None:
        await _send(websocket, p.Error(code="unknown_id", message=f"unknown media {media_id!r}"))
        await websocket.close(code=4004, reason="unknown media")
        return
    role = ctx.accounts.role_in(user, media.project)
    if role is None:
        # Another project's media item looks exactly like a missing one.
        await _send(websocket, p.Error(code="unknown_id", message=f"unknown media {media_id!r}"))
        await websocket.close(code=4004, reason="unknown media")
        return

    # Snapshot (or position) and subscription in one step, with no await in between, so the
    # live queue starts exactly where the snapshot or the catch-up read ends.
    # The state may run ahead of the log by commands whose commit is under way (see Ledger);
    # the hub publishes exactly the events after `published`.
    subscriber = ctx.hub.subscribe([media_stream(media_id), project_stream(media.project)], ctx.settings.client_queue)
    session = ctx.sessions.add(credential, media.project, lambda: ctx.hub.unsubscribe(subscriber))
    start, published = state.seq, ctx.ledger.published
    first: p.ServerMessage | None = None
    if hello.last_seq is None or hello.last_seq > start:
        first = p.snapshot(state, media_id, user.actor)
        delivery = p.Delivery(start)
    else:
        delivery = p.Delivery(hello.last_seq)
    try:
        await _send(websocket, p.Welcome(protocol=p.PROTOCOL_VERSION, user=user.name, role=role.value, media=media_id, head=start))
        if first is not None:
            await _send(websocket, first)
        else:
            await _catch_up(ctx, websocket, delivery, media_id, media.project, published)
        seat = ctx.presence.join(media_id, user.name, hello.frame)
        sender = asyncio.create_task(_pump(websocket, subscriber, delivery, seat, session))
        reader = asyncio.create_task(_read_loop(ctx, websocket, user, media_id, seat, session))
        try:
            # The sender ends the socket when the client falls behind or loses access; the
            # reader when the client goes. Whichever ends first ends the other.
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (sender, reader):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, TooSlow, Exception):
                    await task
            ctx.presence.leave(seat)
    finally:
        ctx.sessions.remove(session)
        ctx.hub.unsubscribe(subscriber)


async def _catch_up(ctx: Context, websocket: WebSocket, delivery: p.Delivery, media_id: str, project: str, until: int) -> None:
    """Send the logged events of this socket's streams after the client's position, up to where
    the live subscription starts."""
    after = delivery.last_seq
    while after < until:
        media_events = await ctx.store.read(after, stream=media_stream(media_id), limit=1000)
        project_events = await ctx.store.read(after, stream=project_stream(project), limit=1000)
        batch = sorted(media_events + project_events, key=lambda e: e.seq)
        # Both reads cover up to the smaller of their last positions; past that one may be cut.
        bound = min(
            media_events[-1].seq if len(media_events) == 1000 else until,
            project_events[-1].seq if len(project_events) == 1000 else until,
        )
        events = [e for e in batch if e.seq <= bound]
        fresh = delivery.admit(events)
        if fresh:
            await _send(websocket, p.Events(events=fresh))
        after = bound
        delivery.last_seq = max(delivery.last_seq, bound)


async def _pump(websocket: WebSocket, subscriber: Subscriber, delivery: p.Delivery, seat: Seat, session: Session) -> None:
    """Forward live events (and presence changes) to the client until it falls behind or loses
    access."""
    events_task: asyncio.Task[list[Event]] | None = None
    presence_task: asyncio.Task[p.Presence] | None = None
    ended = asyncio.ensure_future(session.ended.wait())
    try:
        while True:
            events_task = events_task or asyncio.ensure_future(subscriber.next_batch())
            presence_task = presence_task or asyncio.ensure_future(seat.next_roster())
            done, _ = await asyncio.wait({events_task, presence_task, ended}, return_when=asyncio.FIRST_COMPLETED)
            if session.ended.is_set():
                # Nothing more, not even what was queued before access was lost.
                await _close(websocket, session.close_code, session.close_reason)
                return
            if events_task in done:
                try:
                    batch = events_task.result()
                except Overflowed:
                    await _give_up(websocket)
                    return
                events_task = None
                fresh = delivery.admit(batch)
                if fresh:
                    await _send(websocket, p.Events(events=fresh))
                elif subscriber.closed:
                    return
            if presence_task in done:
                await _send(websocket, presence_task.result())
                presence_task = None
    finally:
        for task in (events_task, presence_task, ended):
            if task is not None:
                task.cancel()


class _InFlight:
    """Commands of one socket in flight at once. They are decided in the order they arrived (the
    ledger's lock is first come, first served, and tasks take their first step in creation
    order) but their commits overlap, so a client sending quickly is not held to one command
    per disk flush. At most `limit` at a time: past that, reading the socket waits."""

    def __init__(self, limit: int = 64) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._running: set[asyncio.Task[None]] = set()

    async def start(self, work: Coroutine[Any, Any, None]) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()


async def _read_loop(ctx: Context, websocket: WebSocket, user: User, media_id: str, seat: Seat, session: Session) -> None:
    limit = ctx.settings.max_message_bytes
    in_flight = _InFlight()
    try:
        while True:
            data = await _receive(websocket)
            if session.ended.is_set():
                continue  # access lost: the sender is closing the socket; nothing more is done
            try:
                message = p.parse(data, limit)
            except p.ProtocolError as error:
                await _send(websocket, p.Error(code=error.code, message=error.message, id=error.command_id))
                continue
            if isinstance(message, p.CommandMessage):
                if is_costly(message.body):
                    # Off the loop (a long RLE takes a while to check; the answer is kept for
                    # the ledger), but here: this socket's later commands wait for it, so they
                    # are still decided in the order they were sent.
                    try:
                        await asyncio.to_thread(precheck, message.body)
                    except DomainError as error:
                        await _send(websocket, p.Error(code=error.code.value, message=error.message, id=str(message.id)))
                        continue
                await in_flight.start(_command(ctx, websocket, user, media_id, message))
            elif isinstance(message, p.PresenceUpdate):
                ctx.presence.move(seat, message.frame, message.cursor)
            elif isinstance(message, p.Ping):
                await _send(websocket, p.Pong())
            else:
                await _send(websocket, p.Error(code="unexpected_message", message="hello was already received"))
    finally:
        in_flight.cancel()


async def _command(ctx: Context, websocket: WebSocket, user: User, media_id: str, message: p.CommandMessage) -> None:
    def authorize(scope: Scope) -> None:
        authorize_on_media(ctx, user, message.body, scope, media_id)
        ctx.limits.check_quota(ctx.ledger.state, user.actor, message.body)

    command_id = str(message.id)  # canonical text form
    try:
        ctx.limits.admit(user.actor, message.body)
        precheck(message.body)  # cheap here: a costly command was checked off the loop already
        event, duplicate = await ctx.ledger.execute(user.actor, message.body, command_id, authorize=authorize, panoptic=message.panoptic)
    except LimitExceeded as error:
        await _reply(websocket, p.Error(code=error.code, message=error.message, id=command_id))
        return
    except DomainError as error:
        await _reply(websocket, p.Error(code=error.code.value, message=error.message, id=command_id))
        return
    except Forbidden as error:
        await _reply(websocket, p.Error(code="forbidden", message=str(error), id=command_id))
        return
    except LedgerError as error:
        await _reply(websocket, p.Error(code="internal_error", message=str(error), id=command_id))
        return
    stacks = ctx.ledger.state.stacks_of(user.actor, media_id)
    await _reply(websocket, p.Ack(id=command_id, seq=event.seq, duplicate=duplicate, undo=len(stacks.undo), redo=len(stacks.redo)))


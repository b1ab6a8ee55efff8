"""One WebSocket per client and media item: the asyncio adapter around `server.protocol`.

Two tasks per socket: this one reads client messages (commands, presence), a sender drains the
subscriber queue. Close codes: 4001 unauthorised, 4003 forbidden (origin or membership), 4004
unknown media, 4008 fell behind (resume from your last seq), 1009 message far over the limit.
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
from domain.precheck import precheck
from server import protocol as p
from server.accounts import User
from server.context import Context, Forbidden, authorize_on_media
from server.hub import Overflowed, Subscriber
from server.ledger import LedgerError
from server.presence import Seat

log = logging.getLogger("masklog.ws")

HELLO_TIMEOUT_S = 10.0


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    """Browsers always send Origin; it must be this server (or a configured origin). Programs
    that send none are let through: Origin is a defence against other web pages, and the token
    still decides who may do what."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if origin in allowed:
        return True
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def media_socket(websocket: WebSocket) -> None:
    ctx: Context = websocket.app.state.ctx
    media_id = websocket.path_params["media"]
    if not origin_allowed(websocket, ctx.settings.allowed_origins):
        await websocket.close(code=4003, reason="origin not allowed")
        return
    await websocket.accept()
    try:
        await _serve(ctx, websocket, media_id)
    except WebSocketDisconnect:
        pass
    except Exception:  # the server keeps serving whatever one socket did
        log.exception("socket for media %s failed", media_id)
        with contextlib.suppress(Exception):
            await websocket.close(code=1011)


async def _send(websocket: WebSocket, message: p.ServerMessage) -> None:
    # The reader (acks) and the pump (events) both send; one lock per socket keeps whole
    # messages from interleaving.
    lock = websocket.scope.setdefault("masklog.send_lock", asyncio.Lock())
    async with lock:
        await websocket.send_text(p.encode(message).decode())


async def _reply(websocket: WebSocket, message: p.ServerMessage) -> None:
    """Answer a command; the client may have gone meanwhile (its event is in the log all the
    same, and a retry with the same id gets the same answer)."""
    with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, RuntimeError):
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
    user = await ctx.accounts.authenticate(hello.token)
    if user is None:
        await _send(websocket, p.Error(code="unauthorized", message="unknown or missing token"))
        await websocket.close(code=4001, reason="unauthorized")
        return
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
        sender = asyncio.create_task(_pump(websocket, subscriber, delivery, seat))
        try:
            await _read_loop(ctx, websocket, user, media_id, seat)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            ctx.presence.leave(seat)
    finally:
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


async def _pump(websocket: WebSocket, subscriber: Subscriber, delivery: p.Delivery, seat: Seat) -> None:
    """Forward live events (and presence changes) to the client until it falls behind."""
    events_task: asyncio.Task[list[Event]] | None = None
    presence_task: asyncio.Task[p.Presence] | None = None
    try:
        while True:
            events_task = events_task or asyncio.ensure_future(subscriber.next_batch())
            presence_task = presence_task or asyncio.ensure_future(seat.next_roster())
            done, _ = await asyncio.wait({events_task, presence_task}, return_when=asyncio.FIRST_COMPLETED)
            if events_task in done:
                try:
                    batch = events_task.result()
                except Overflowed:
                    await websocket.close(code=4008, reason="too slow: resume from your last seq")
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
        for task in (events_task, presence_task):
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


async def _read_loop(ctx: Context, websocket: WebSocket, user: User, media_id: str, seat: Seat) -> None:
    limit = ctx.settings.max_message_bytes
    in_flight = _InFlight()
    try:
        while True:
            data = await _receive(websocket)
            try:
                message = p.parse(data, limit)
            except p.ProtocolError as error:
                await _send(websocket, p.Error(code=error.code, message=error.message, id=error.command_id))
                continue
            if isinstance(message, p.CommandMessage):
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

    command_id = str(message.id)  # canonical text form
    try:
        # Off the loop: a long RLE takes a while to check (the ledger then finds the answer).
        await asyncio.to_thread(precheck, message.body)
        event, duplicate = await ctx.ledger.execute(user.actor, message.body, command_id, authorize=authorize, panoptic=message.panoptic)
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


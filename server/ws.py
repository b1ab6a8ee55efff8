"""One WebSocket per client and media item: the asyncio adapter around `server.protocol`.

It only moves messages: it receives, asks the protocol core what to answer (the opening
conversation, delivery order, close codes: `protocol.CloseCode`), sends and closes. Two tasks per
socket: this one reads client messages (commands, presence), a sender drains the subscriber queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from masklog.domain.decide import DomainError, Scope
from masklog.domain.events import Event, media_stream, project_stream
from masklog.domain.precheck import is_costly, precheck
from masklog.domain.state import LabelState
from masklog.server import protocol as p
from masklog.server.accounts import User
from masklog.server.authorization import Forbidden, authorize_on_media
from masklog.server.context import Context
from masklog.server.hub import Overflowed, Subscriber
from masklog.server.ledger import LedgerError
from masklog.server.limits import LimitExceeded
from masklog.server.presence import Seat
from masklog.server.replay import replay_media
from masklog.server.sessions import Session
from masklog.server.shared_ledger import Contended

log = logging.getLogger("masklog.ws")

HELLO_TIMEOUT_S = 10.0


async def media_socket(websocket: WebSocket) -> None:
    ctx: Context = websocket.app.state.ctx
    media_id = websocket.path_params["media"]
    await websocket.accept()
    refused = p.check_origin(websocket.headers.get("host"), websocket.headers.get("origin"), websocket.scope.get("server"), ctx.settings)
    if refused is not None:
        await _refuse(websocket, refused)
        return
    try:
        await _serve(ctx, websocket, media_id)
    except WebSocketDisconnect:
        pass
    except TooSlow:
        log.info("socket for media %s closed: the client stopped reading", media_id)
        await _close(websocket, p.TOO_SLOW)
    except Exception:  # the server keeps serving whatever one socket did
        log.exception("socket for media %s failed", media_id)
        with contextlib.suppress(Exception):
            await websocket.close(code=p.CloseCode.INTERNAL_ERROR)


class TooSlow(Exception):
    """The client did not take a message within the send timeout."""


async def _send(websocket: WebSocket, message: p.ServerMessage) -> None:
    # The reader (acks) and the pump (events) both send; one lock per socket keeps whole
    # messages from interleaving. A client that stops reading makes the send wait once the
    # buffers are full; past the timeout the socket is given up (`protocol.TOO_SLOW`).
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


async def _close(websocket: WebSocket, close: p.Close) -> None:
    """Close from the server's side. The close frame may wait behind whatever the client has not
    read; the server drops the connection when the closing handshake times out."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=close.code, reason=close.reason), CLOSE_BOUND_S)


async def _refuse(websocket: WebSocket, close: p.Close) -> None:
    """Refuse a socket while it opens: its error, if any, then the close frame."""
    if close.error is not None:
        await _send(websocket, close.error)
    await websocket.close(code=close.code, reason=close.reason)


async def _reply(websocket: WebSocket, message: p.ServerMessage) -> None:
    """Answer a command; the client may have gone meanwhile (its event is in the log all the
    same, and a retry with the same id gets the same answer)."""
    with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, RuntimeError, TooSlow):
        await _send(websocket, message)


async def _receive(websocket: WebSocket) -> str | bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text: str | None = message.get("text")
    data: bytes | None = message.get("bytes")
    return text if text is not None else (data or b"")


async def _serve(ctx: Context, websocket: WebSocket, media_id: str) -> None:
    try:
        data: str | bytes | None = await asyncio.wait_for(_receive(websocket), HELLO_TIMEOUT_S)
    except TimeoutError:
        data = None
    hello = p.read_hello(data, ctx.settings.max_message_bytes)
    if isinstance(hello, p.Close):
        await _refuse(websocket, hello)
        return
    credential = await ctx.accounts.credential(hello.token)
    # The media item's state, loaded for a caller who may see it (greet refuses the others
    # from the base alone).
    if hello.last_seq is not None and hello.last_seq > ctx.ledger.published:
        # A client coming from another server process may have seen events this one has not
        # applied yet (they are in the log): read up to them before answering.
        await ctx.ledger.catch_up()
    media = ctx.ledger.base.media.get(media_id)
    visible = credential is not None and media is not None and ctx.accounts.role_in(credential.user, media.project) is not None
    if credential is not None and not visible:
        # Another server process may have just added the media item or the membership: look
        # again once before refusing.
        await ctx.accounts.refresh()
        await ctx.ledger.catch_up()
        media = ctx.ledger.base.media.get(media_id)
        visible = media is not None and ctx.accounts.role_in(credential.user, media.project) is not None
    state: LabelState | None = None
    head = ctx.ledger.head
    greeted_from_log = False
    if visible and media is not None and ctx.ledger.loaded(media_id) is None and hello.labels_window is not None and hello.last_seq is None:
        # A cold open of a client that wants a window of labels: greet from the log (the window's
        # labels and every cell's head, as of the last published position: a few parts of its
        # snapshot, not the whole state), then catch up from the log to the subscription. The
        # full state loads meanwhile, for the socket's commands.
        head = ctx.ledger.published
        view = await replay_media(ctx.store, media, head, p.clamp_window(hello.labels_window, media.frames))
        state = view if media_id in view.media else None
        greeted_from_log = state is not None
        log.debug("greeted a socket on %s from the log as of %d (cold, window %s)", media_id, head, hello.labels_window)
    if state is None:
        state = await ctx.ledger.state_of(media_id) if visible else ctx.ledger.base
        head = ctx.ledger.head
    # From here to the subscription, no await: the live queue starts where the greeting ends.
    greeting = p.greet(hello, credential, media_id, state, ctx.ledger.published, ctx.accounts.role_in, ctx.workers.capabilities(ctx.backends), head=head)
    if isinstance(greeting, p.Close):
        await _refuse(websocket, greeting)
        return
    user, project = greeting.credential.user, greeting.project
    subscriber = ctx.hub.subscribe([media_stream(media_id), project_stream(project)], ctx.settings.client_queue)
    subscribed_at = ctx.ledger.published
    session = ctx.sessions.add(greeting.credential, project, lambda: ctx.hub.unsubscribe(subscriber))
    delivery = p.Delivery(greeting.delivered)
    ctx.ledger.pin(media_id)  # kept loaded while the socket is open
    try:
        await _send(websocket, greeting.welcome)
        if isinstance(greeting.then, p.Snapshot):
            await _send(websocket, greeting.then)
            if greeted_from_log:
                # Only now: loading the full state holds the interpreter for a while (a long
                # item's snapshot decodes in tens of ms) and would hold up the greeting.
                ctx.ledger.preload(media_id)
            # A snapshot from the log may be older than the subscription: the log has the rest.
            await _catch_up(ctx, websocket, delivery, media_id, project, subscribed_at)
        else:
            await _catch_up(ctx, websocket, delivery, media_id, project, greeting.then.until)
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
        ctx.ledger.unpin(media_id)


async def _catch_up(ctx: Context, websocket: WebSocket, delivery: p.Delivery, media_id: str, project: str, until: int) -> None:
    """Send the logged events of this socket's streams after the client's position, up to where
    the live subscription starts."""
    after = delivery.last_seq
    while after < until:
        media_events = await ctx.store.read(after, stream=media_stream(media_id), limit=p.CATCH_UP_PAGE)
        project_events = await ctx.store.read(after, stream=project_stream(project), limit=p.CATCH_UP_PAGE)
        events, after = p.catch_up_page(media_events, project_events, until)
        fresh = delivery.admit(events)
        if fresh:
            await _send(websocket, p.Events(events=fresh))
        delivery.last_seq = max(delivery.last_seq, after)


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
            if session.close is not None:
                # Access lost: nothing more, not even what was queued before.
                await _close(websocket, session.close)
                return
            if events_task in done:
                try:
                    batch = events_task.result()
                except Overflowed:
                    await _close(websocket, p.TOO_SLOW)
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
        ctx.limits.check_quota(ctx.ledger.running, user.actor, message.body)
        ctx.workers.check(message.body)

    command_id = str(message.id)  # canonical text form
    try:
        ctx.limits.admit(user.actor, message.body)
        precheck(message.body)  # cheap here: a costly command was checked off the loop already
        await ctx.workers.look_again(message.body)
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
    except Contended as error:
        await _reply(websocket, p.Error(code="conflict", message=str(error), id=command_id))
        return
    except LedgerError as error:
        await _reply(websocket, p.Error(code="internal_error", message=str(error), id=command_id))
        return
    stacks = (await ctx.ledger.state_of(media_id)).stacks_of(user.actor, media_id)
    await _reply(websocket, p.Ack(id=command_id, seq=event.seq, duplicate=duplicate, undo=len(stacks.undo), redo=len(stacks.redo)))


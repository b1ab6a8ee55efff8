"""The write path: decide a command against the live state, append it, apply it, fan it out.

One ledger per server process owns the in-memory projections (`server.projections`: the base
always, media items' states while they are used). Commands are
serialised by a lock so each is decided against the state that includes every event before it
(one log, one order). A command id already in the log is answered with the stored event, so a
retried command is applied once (C5).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy as _copy
import gc
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from masklog.domain.decide import FIRST_TRACKERS, Command, DomainError, ErrorCode, Redo, SaveSegment, Scope, Undo, check_new_id, decide, scope_of
from masklog.domain.events import (
    ClassAdded,
    Event,
    MediaAdded,
    NewEvent,
    ObjectCreated,
    ObjectInfo,
    ProjectCreated,
    PromptAdded,
    Redone,
    TrackCancelled,
    TrackCompleted,
    TrackedAccepted,
    TrackedDiscarded,
    TrackFailed,
    TrackFrameProduced,
    TrackRequested,
    Undone,
    is_derived_event_id,
    new_event_id,
    stored,
)
from masklog.domain.snapshots import media_view
from masklog.domain.state import LabelState, TrackInfo, fold
from masklog.server.hub import Hub
from masklog.server.projections import LoadReport, Projections, media_of_stream
from masklog.server.replay import merge_media
from masklog.server.store import EventStore, StoreError

log = logging.getLogger("masklog.ledger")


async def rebuild(store: EventStore, state: LabelState | None = None) -> LabelState:
    """Fold the whole log (after `state.seq`) into a state.

    The cyclic garbage collector is paused meanwhile: a rebuild allocates millions of objects
    that all stay alive, and each collection would walk them again for nothing (about a third
    of the time on a large log). Afterwards they are moved to the permanent generation so later
    collections skip them too.
    """
    state = state if state is not None else LabelState()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        async for batch in store.iter_batches(state.seq):
            fold(batch, state)
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()
    return state


def _decide(
    state: LabelState,
    actor: str,
    command: Command,
    event_id: str,
    *,
    authorize: Callable[[Scope], None] | None = None,
    panoptic: bool = False,
    cause: str | None = None,
    trackers: Collection[str] = FIRST_TRACKERS,
    claims: Mapping[str, str] | None = None,
) -> NewEvent:
    """The decision every write path makes: where the command lands, whether `authorize` lets
    it land there (it raises to refuse), and the event it makes. Raises DomainError for a
    refused command. `claims`: object ids the command creates that are claimed on other media
    items than the state holds ({object: media}): refused as taken, as a full state would."""
    scope = scope_of(state, command)
    if authorize is not None:
        authorize(scope)
    if claims:
        _refuse_claimed(command, scope, claims)
    body = decide(state, actor, command, panoptic=panoptic, trackers=trackers)
    return NewEvent(id=event_id, stream=scope.stream, actor=actor, body=body, cause=cause)


def _new_object(command: Command) -> str | None:
    """The object id a command claims: a new object, or a prompt for one."""
    if isinstance(command, ObjectCreated) or (isinstance(command, PromptAdded) and command.media is not None):
        return command.object
    return None


def _refuse_claimed(command: Command, scope: Scope, claims: Mapping[str, str]) -> None:
    """Object ids are global: one claimed on another media item is refused with the answer
    `decide` gives for one taken on this media item (whatever project took it)."""
    object_id = _new_object(command)
    if object_id is None or claims.get(object_id, scope.media) == scope.media:
        return
    check_new_id(object_id, "object")
    if isinstance(command, PromptAdded):
        raise DomainError(
            ErrorCode.EXISTS,
            f"object {object_id!r} already exists (ids are never reused); a prompt on an existing object names no class or media",
        )
    raise DomainError(ErrorCode.EXISTS, f"object {object_id!r} already exists (ids are never reused)")


def _decide_all(
    state: LabelState,
    actor: str,
    commands: list[Command],
    authorize: Callable[[Scope], None] | None,
    trackers: Collection[str],
    ids: list[str] | None = None,
    claims: Mapping[str, str] | None = None,
) -> list[NewEvent]:
    """Decide `commands` in order, each against a copy of `state` that includes the ones before
    it; `state` itself is not touched. Raises for the first refused, naming its place. `ids`:
    the event ids to give them (the server's derived ids), else random ones."""
    trial = state.copy()
    decided: list[NewEvent] = []
    for index, command in enumerate(commands):
        try:
            new = _decide(
                trial, actor, command, ids[index] if ids is not None else new_event_id(), authorize=authorize, trackers=trackers, claims=claims
            )
        except DomainError as error:
            raise DomainError(error.code, f"item {index + 1} of {len(commands)}: {error.message}") from None
        trial.apply(stored(new, trial.seq + 1, 0.0))
        decided.append(new)
    return decided


def _with_id(events: list[Event], event_id: str) -> Event:
    return next(event for event in events if event.id == event_id)


class LedgerError(Exception):
    """The log refused an append; the ledger rebuilt its state from the log."""


class Ledger:
    """Decides commands one at a time but lets their commits overlap.

    Deciding needs the state including every earlier command, but waiting for each commit
    (an fsync) before deciding the next would cap the whole server at one command per disk
    flush. So a decided event is applied to the state at once, with the position it will get
    (this process is the log's only writer, so positions are predictable), and its append joins
    the store's next group commit. Acks and fan-out wait for the commit, and events are
    published in position order. Should an append fail, the state is rebuilt from the log.

    Each commit (the append, then the fan-out) runs as a task of its own, never in the caller:
    a caller that goes away (a socket closed while its command commits cancels its task) must
    not keep a committed event from being published, or every later one would wait for it.

    The state is split (`server.projections`): the base (projects, classes, media, running
    tracks) is always in memory, a media item's state only while it is used. A command is
    decided against the state of the media item it lands on, found from its own fields (its
    `media`; the media item of the object, track or prompt it names: a loaded state knows, else
    the store's object index or the naming event's stream) and loaded on demand, under the lock.
    Object ids stay global: a new object whose id is claimed on another media item is refused
    as taken (`_refuse_claimed`); claims still in flight are in loaded states, since a media
    item with events in flight is never evicted.
    """

    def __init__(
        self,
        store: EventStore,
        hub: Hub,
        trackers: Collection[str] = FIRST_TRACKERS,
        *,
        budget_bytes: int = 1024 * 1024**2,
        snapshot_every: int = 1000,
        base_snapshot_every: int = 20_000,
    ) -> None:
        self.store = store
        self.hub = hub
        # The tracker names a track request may give: those this server's backends offer.
        self.trackers = frozenset(trackers)
        self.projections = Projections(store, budget_bytes=budget_bytes, snapshot_every=snapshot_every, base_snapshot_every=base_snapshot_every)
        self._lock = asyncio.Lock()
        self._next_seq = 1
        # Command id -> its commit under way (append and fan-out): a retry waits for it.
        self._pending: dict[str, asyncio.Task[list[Event]]] = {}
        # Appends under way: recovering waits for them before reading the log.
        self._appends: set[asyncio.Future[list[Event]]] = set()
        # Background loads of media items (`preload`).
        self._preloads: set[asyncio.Future[LabelState]] = set()
        self._committed: dict[int, Event] = {}
        self._published = 0
        # Why the log may not be written any more (it failed its integrity check), or None.
        self.refusing: str | None = None
        # Commands another writer got in before (decided again), and those given up (always 0
        # here: this process is the log's only writer; see server.shared_ledger).
        self.conflicts = 0
        self.contended = 0

    shared = False  # whether other processes write the log too

    async def load(self) -> LoadReport:
        """Load the base projection and the media items with running tracks (at start-up);
        everything else loads on first use."""
        head = await self.store.head()
        report = await self.projections.load_base(head)
        self._next_seq = self._published = head
        self._next_seq += 1
        return report

    # ---- what readers see --------------------------------------------------------------------------

    def refuse_writes(self, reason: str) -> None:
        """Refuse every command from now on (the log failed its integrity check while this
        process served): nothing more is written to a log that may be damaged."""
        self.refusing = reason

    def _check_writable(self) -> None:
        if self.refusing is not None:
            raise LedgerError(f"the server refuses changes: {self.refusing}")

    @property
    def base(self) -> LabelState:
        """The project-level state: projects, classes and media items (always loaded)."""
        return self.projections.base

    @property
    def running(self) -> dict[str, tuple[str, str]]:
        """The tracks still running, in the order they were requested: {track: (media, requester)}."""
        return self.projections.running

    @property
    def head(self) -> int:
        """The position every state the ledger holds is as of: the last event decided (its
        commit may be under way; see `published`)."""
        return self._next_seq - 1

    async def state_of(self, media: str) -> LabelState:
        """The live state of a media item, loaded if it is not (then under the lock). For an
        unknown media item, an empty state that knows no objects (and not that media item)."""
        state = self.projections.loaded(media)
        if state is not None:
            return state
        if media not in self.base.media:
            return media_view(self.base)
        async with self._lock:
            return await self._load(media)

    async def _load(self, media: str) -> LabelState:
        """Load a media item's state (under the lock)."""
        return await self.projections.load(media)

    async def catch_up(self, seq: int | None = None) -> None:
        """Make sure the states hold every event up to `seq` (None: the log's head) that another
        process wrote. This process is the log's only writer here, so they do already."""

    def loaded(self, media: str) -> LabelState | None:
        """A media item's state if it is loaded, without loading it."""
        return self.projections.loaded(media)

    def preload(self, media: str) -> None:
        """Start loading a media item's state in the background (a socket greeted from the log
        will send commands soon); a failure is logged, and the next use loads it again."""
        task = asyncio.ensure_future(self.state_of(media))
        self._preloads.add(task)
        task.add_done_callback(self._preloaded)

    def _preloaded(self, task: asyncio.Future[LabelState]) -> None:
        self._preloads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("loading a media item in the background failed: %r", task.exception())

    def pin(self, media: str) -> None:
        """Keep a media item's state loaded (an open socket) until `unpin`."""
        self.projections.pin(media)

    def unpin(self, media: str) -> None:
        self.projections.unpin(media)

    def evict(self, media: str, *, force: bool = False) -> bool:
        """Drop a media item's state now, if nothing uses it (`force`, for tests: unless events
        of it are in flight); see `Projections.evict`."""
        return self.projections.evict(media, force=force)

    async def close(self) -> None:
        """At shutdown: wait for the commits under way, then snapshot what changed."""
        await asyncio.gather(*self._preloads, return_exceptions=True)
        async with self._lock:
            await asyncio.gather(*self._appends, return_exceptions=True)
            pending = [task for task in self._pending.values() if not task.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self.projections.close(self._published)

    # ---- the write paths ------------------------------------------------------------------------------

    async def execute(
        self,
        actor: str,
        command: Command,
        command_id: str,
        *,
        authorize: Callable[[Scope], None] | None = None,
        panoptic: bool = False,
        cause: str | None = None,
    ) -> tuple[Event, bool]:
        """Apply one command; returns its committed event and whether it was a retry of an
        earlier one (then nothing new was appended).

        `authorize` sees where the command lands before anything is decided and raises to refuse.
        Raises DomainError for a refused command; nothing is appended then.
        """
        self._check_writable()
        if is_derived_event_id(command_id):
            raise DomainError(ErrorCode.INVALID_ID, "command ids of UUID version 8 are reserved for the events the server derives; use a random (version 4) UUID")
        async with self._lock:
            in_flight, existing = await self._earlier(command, command_id)
            if in_flight is None and existing is None:
                new = await self._decide_routed(actor, command, command_id, authorize=authorize, panoptic=panoptic, cause=cause)
                predicted = [self._apply_new(new)]
                commit = self._start_commit(predicted)
        if in_flight is not None or existing is not None:
            return await self._answer_earlier(in_flight, existing, actor, command_id), True
        [event] = await asyncio.shield(commit)
        return event, False

    async def execute_batch(
        self, actor: str, commands: list[tuple[Command, str]], *, cause: str | None = None
    ) -> list[Event | DomainError]:
        """Decide several commands of one actor, in order, and append the accepted ones in one
        commit: the tracking actor writes a frame's results for all its objects this way.

        Returns, per command, its committed event (the stored one when its id was already in
        the log: re-running never duplicates) or the DomainError that refused it. Raises
        LedgerError when the log refuses the append.
        """
        self._check_writable()
        results: list[Event | DomainError | None] = [None] * len(commands)
        waits: dict[int, asyncio.Task[list[Event]]] = {}
        commit: asyncio.Task[list[Event]] | None = None
        predicted: list[Event] = []
        accepted: list[int] = []  # the indexes of `predicted`'s commands
        async with self._lock:
            for index, (command, command_id) in enumerate(commands):
                in_flight, existing = await self._earlier(command, command_id)
                if in_flight is not None:
                    waits[index] = in_flight
                    continue
                if existing is not None:
                    results[index] = existing
                    continue
                try:
                    new = await self._decide_routed(actor, command, command_id, cause=cause)
                except DomainError as error:
                    results[index] = error
                    continue
                predicted.append(self._apply_new(new))
                accepted.append(index)
            if predicted:
                commit = self._start_commit(predicted)
        for index, wait in waits.items():
            results[index] = _with_id(await asyncio.shield(wait), commands[index][1])
        if commit is not None:
            for index, event in zip(accepted, await asyncio.shield(commit), strict=True):
                results[index] = event
        return results  # type: ignore[return-value]

    async def execute_all(
        self, actor: str, commands: list[Command], *, authorize: Callable[[Scope], None] | None = None, ids: list[str] | None = None
    ) -> list[Event]:
        """Apply every command or none (an import): each is decided, once, on a copy of the
        state that includes the ones before it; only if all pass are their events applied to
        the state and appended, in one commit. A refusal raises DomainError (or what `authorize`
        raises), its message naming the command's place in the list. `ids`, one per command:
        the event ids to log them under (ids the server derives, e.g. an import's), else random."""
        if ids is not None and len(ids) != len(commands):
            raise ValueError("one id per command")
        self._check_writable()
        async with self._lock:
            involved: set[str] = set()
            for command in commands:
                media = await self._route(command)
                if media is not None:
                    involved.add(media)
            with self._pinned(involved):
                for media in involved:
                    await self._load(media)
                trial = self._combined(involved)
                claims = await self._claims(commands)
                # Decided on a copy, on a worker thread: copying a large projection takes a
                # while, and the loop keeps serving meanwhile. Only this lock's holder changes
                # the states, so they are still the ones the copy was taken from and the decided
                # events are applied to them as they are.
                decided = await asyncio.to_thread(_decide_all, trial, actor, commands, authorize, self.trackers, ids, claims)
                if not decided:
                    return []
                # Media items the batch adds or first writes to: loaded (empty or from the log)
                # before their events are applied.
                landed = {m for m in (media_of_stream(new.stream) for new in decided) if m is not None} - involved
                with self._pinned(landed):
                    for media in landed:
                        await self._load(media)
                    commit = self._start_commit([self._apply_new(new) for new in decided])
        return await asyncio.shield(commit)

    async def _earlier(self, command: Command, command_id: str) -> tuple[asyncio.Task[list[Event]] | None, Event | None]:
        """The command id's earlier use, if any (call under the lock): its commit under way, or
        its stored event. A frame result needs no look-up: the rules refuse a frame its track
        already produced, so its id (derived from track, object and frame) cannot be in the log.
        It saves a read per frame on the tracking path."""
        in_flight = self._pending.get(command_id)
        if in_flight is not None or isinstance(command, TrackFrameProduced):
            return in_flight, None
        return None, await self.store.get(command_id)

    async def _answer_earlier(self, in_flight: asyncio.Task[list[Event]] | None, existing: Event | None, actor: str, command_id: str) -> Event:
        """What a retry gets: the event the id's first use stored (once its commit is done)."""
        if existing is None:
            assert in_flight is not None
            existing = _with_id(await asyncio.shield(in_flight), command_id)
        return self._check_owner(existing, actor)

    # ---- where a command lands ---------------------------------------------------------------------

    async def _route(self, command: Command) -> str | None:
        """The media item whose state decides `command`; None for the base (a project-level
        command, or one naming ids nobody knows: the base then refuses it as `scope_of` would)."""
        media: str | None
        if isinstance(command, (ProjectCreated, ClassAdded, MediaAdded)):
            return None
        if isinstance(command, (ObjectCreated, TrackRequested, Undo, Redo, Undone, Redone)):
            media = command.media
        elif isinstance(command, PromptAdded) and command.media is not None:
            media = command.media
        elif isinstance(command, (TrackFrameProduced, TrackCompleted, TrackCancelled, TrackFailed, TrackedAccepted, TrackedDiscarded)):
            media = await self._media_of_track(command.track)
        elif isinstance(command, SaveSegment):
            media = await self._media_of_prompt(command.prompt)
        else:
            media = await self._media_of_object(command.object)
        return media if media is not None and media in self.base.media else None

    async def _media_of_object(self, object_id: str) -> str | None:
        for media, state in self.projections.loaded_states():
            if object_id in state.object_media or object_id in state.pending_objects:
                return media
        return await self.store.object_media(object_id)

    async def _media_of_track(self, track: str) -> str | None:
        running = self.running.get(track)
        if running is not None:
            return running[0]
        for media, state in self.projections.loaded_states():
            if track in state.tracks:
                return media
        event = await self.store.get(track)
        return media_of_stream(event.stream) if event is not None and isinstance(event.body, TrackRequested) else None

    async def _media_of_prompt(self, prompt: str) -> str | None:
        for media, state in self.projections.loaded_states():
            if prompt in state.segments:
                return media
        event = await self.store.get(prompt)
        return media_of_stream(event.stream) if event is not None and isinstance(event.body, PromptAdded) else None

    async def claims(self, object_ids: Iterable[str]) -> dict[str, str]:
        """The media items these object ids are claimed on (those claimed at all)."""
        found: dict[str, str] = {}
        for object_id in object_ids:
            media = await self._media_of_object(object_id)
            if media is not None:
                found[object_id] = media
        return found

    async def _claims(self, commands: Iterable[Command]) -> dict[str, str]:
        """Where the object ids these commands create are claimed already: {object: media}."""
        claims: dict[str, str] = {}
        for command in commands:
            object_id = _new_object(command)
            if object_id is None or object_id in claims:
                continue
            media = await self._media_of_object(object_id)
            if media is not None:
                claims[object_id] = media
        return claims

    @contextlib.contextmanager
    def _pinned(self, media: Iterable[str | None]) -> Iterator[None]:
        held = [m for m in media if m is not None]
        for m in held:
            self.projections.pin(m)
        try:
            yield
        finally:
            for m in held:
                self.projections.unpin(m, evict=False)

    async def _decide_routed(
        self,
        actor: str,
        command: Command,
        command_id: str,
        *,
        authorize: Callable[[Scope], None] | None = None,
        panoptic: bool = False,
        cause: str | None = None,
    ) -> NewEvent:
        """Decide a command against the state of the media item it lands on (call under the lock)."""
        media = await self._route(command)
        with self._pinned([media]):
            state = self.base if media is None else await self._load(media)
            claims = await self._claims([command]) if _new_object(command) is not None else None
            view = await self._with_other_media(state, command)
            return _decide(view, actor, command, command_id, authorize=authorize, panoptic=panoptic, cause=cause, trackers=self.trackers, claims=claims)

    async def _with_other_media(self, state: LabelState, command: Command) -> LabelState:
        """A track request naming an object or a replaced track of another media item of the
        same project is refused for that reason (not as an unknown id), as against a full
        state: the view shows them. Another project's stay unknown."""
        if not isinstance(command, TrackRequested):
            return state
        here = self.base.media.get(command.media)
        if here is None:
            return state

        async def elsewhere(media: str | None) -> LabelState | None:
            other = self.base.media.get(media) if media is not None else None
            if other is None or other.media == here.media or other.project != here.project:
                return None
            return await self._load(other.media)

        objects: dict[str, ObjectInfo] = {}
        for object_id in command.objects:
            if object_id not in state.objects:
                other_state = await elsewhere(await self._media_of_object(object_id))
                if other_state is not None and object_id in other_state.objects:
                    objects[object_id] = other_state.objects[object_id]
        tracks: dict[str, TrackInfo] = {}
        if command.replaces is not None and command.replaces not in state.tracks:
            other_state = await elsewhere(await self._media_of_track(command.replaces))
            if other_state is not None and command.replaces in other_state.tracks:
                tracks[command.replaces] = other_state.tracks[command.replaces]
        if not objects and not tracks:
            return state
        view = _copy.copy(state)  # shares every dict but the ones replaced
        view.objects = {**state.objects, **objects}
        view.tracks = {**state.tracks, **tracks}
        return view

    def _combined(self, media: Collection[str]) -> LabelState:
        """One state holding the base and these media items' states (for an all-or-nothing
        batch, which is decided on a copy of it)."""
        if len(media) == 1:
            [only] = media
            state = self.projections.loaded(only)
            assert state is not None
            return state
        combined = media_view(self.base)
        combined.seq = self.head
        for item in sorted(media):
            state = self.projections.loaded(item)
            assert state is not None
            merge_media(combined, state)
        return combined

    # ---- the steps every write path shares ---------------------------------------------------------

    def _apply_new(self, new: NewEvent) -> Event:
        """Apply a decided event to the state at once, at the position it will get (call under
        the lock)."""
        event = stored(new, self._next_seq, time.time())
        self.projections.apply(event)
        self._next_seq += 1
        return event

    def _start_commit(self, predicted: list[Event]) -> asyncio.Task[list[Event]]:
        """Start committing applied events (one append, then their fan-out) as a task that no
        caller's cancellation reaches; retries of their ids wait on it."""
        news = [NewEvent(id=e.id, stream=e.stream, actor=e.actor, body=e.body, cause=e.cause) for e in predicted]
        append = asyncio.ensure_future(self.store.append(news))
        self._appends.add(append)
        append.add_done_callback(self._appends.discard)
        commit = asyncio.ensure_future(self._commit(predicted, append, self.projections.generation))
        commit.add_done_callback(_consume_error)
        for event in predicted:
            self._pending[event.id] = commit
        return commit

    async def _commit(self, predicted: list[Event], append: asyncio.Future[list[Event]], generation: int) -> list[Event]:
        """Wait for the append, then publish; if it failed, or the log gave other positions than
        predicted (someone else wrote to it), rebuild the state from the log."""
        try:
            try:
                events = await append
            except StoreError as error:  # the store's contract: refused, nothing of it stored
                await self._recover()
                raise LedgerError(f"the log refused the append: {error}") from error
            if [e.seq for e in events] != [e.seq for e in predicted]:
                await self._recover()
            for event in events:
                self._publish(event)
            return events
        finally:
            # Only now: until it is published, a retry must wait for this commit rather than
            # find nothing in flight and decide the command again.
            for event in predicted:
                self._pending.pop(event.id, None)
            self.projections.settled(predicted, generation)

    @property
    def published(self) -> int:
        """The last position fanned out to subscribers: every event up to it is committed."""
        return self._published

    @staticmethod
    def _check_owner(event: Event, actor: str) -> Event:
        if event.actor != actor:
            raise DomainError(ErrorCode.EXISTS, f"command id {event.id} was already used by someone else")
        return event

    def _publish(self, event: Event) -> None:
        """Fan out committed events strictly in position order."""
        if event.seq <= self._published:
            return  # published already, by a recovery
        self._committed[event.seq] = event
        while self._published + 1 in self._committed:
            self._published += 1
            self.hub.publish(self._committed.pop(self._published))
        self.projections.committed(self._published)

    async def _recover(self) -> None:
        async with self._lock:
            await asyncio.gather(*self._appends, return_exceptions=True)
            # Every media state may hold an event that never committed: drop them all (they
            # reload from the log on their next use) and rebuild the base.
            self.projections.reset()
            head = await self.store.head()
            await self.projections.load_base(head)
            self._next_seq = head + 1
            # Publish whatever did commit, in order; nothing past the log's head is pending now.
            for event in await self.store.read(self._published):
                self._committed.pop(event.seq, None)
                self._published = event.seq
                self.hub.publish(event)
            self._committed.clear()
            self.projections.committed(self._published)
            # Sockets may have been sent a snapshot holding an event that never committed.
            self.hub.drop_all()


def _consume_error(commit: asyncio.Task[list[Event]]) -> None:
    """A commit whose caller went away still fails loudly enough: the ledger has recovered and
    logged; this only keeps asyncio from reporting the error a second time."""
    if not commit.cancelled():
        commit.exception()

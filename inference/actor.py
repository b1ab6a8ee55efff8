"""The inference actor: answers prompts and works off track requests, writing results to the log.

It follows the log, not a side channel: the server hands it every committed event, and it acts
on `prompt_added` (segment, append `segment_proposed`) and `track_requested` (track, append one
`track_frame_produced` per object and frame, then `track_completed` or `track_failed`). A
`track_cancelled`, or anything else that ends a track, stops its work. At start-up every track
the log still has running is resumed from its last produced frame, or failed with the reason
(see `inference.tracking.plan_track`).

Models run on one worker thread, one unit of work at a time, so the event loop never blocks
and the models never run concurrently. Units are picked fairly: an answer to a click first (a
person is waiting on it; the clicks of different users take turns, see `inference.click_queue`),
then one frame of one track, taking requesters in turn and each requester's tracks in turn, so
one long request never starves the others.

A frame's results are committed while the next frame is computed (up to `window` frames
ahead): tracking runs at the model's speed, not at the model's plus the disk's. Event ids are
derived from (track, object, frame), so re-running a frame can never log it twice.

No cold first click (issue 19): when nothing else waits, the actor embeds frames ahead of
their clicks with a segmenter that can (`protocols.EmbeddingWarmer`: SAM): the frames users are
on (`viewing`, from the presence of the sockets) and those around the frame last clicked, the
nearest first, one frame per unit of work. A click arriving meanwhile waits for at most that one
embedding; no frame is warmed while a track is being worked here (its frames come first), nor
for a media item whose clicks another actor holds.

When several actors share the log (`masklog worker` processes, or servers on one database
running models), each works only what it claims (`inference.claiming`): a track under a lease
on `track:<id>`, a media item's clicks under `media:<id>`; tracks are taken in the queue's fair
order, up to `max_tracks` at once, and only those whose tracker this actor runs. Without claims
(the embedded server, the log's only actor) it works everything, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from masklog.domain.decide import Command, DomainError, ErrorCode
from masklog.domain.events import (
    Event,
    MediaAdded,
    PromptAdded,
    SegmentProposed,
    TrackCancelled,
    TrackCompleted,
    TrackerAlias,
    TrackFailed,
    TrackFrameProduced,
    TrackRequested,
    derived_event_id,
)
from masklog.domain.geometry import rle_decode, rle_encode
from masklog.domain.state import LabelState
from masklog.inference.claiming import ClaimKeeper, fair_order
from masklog.inference.click_queue import ClickQueue
from masklog.inference.interpolation import ACTOR as INTERPOLATION_ACTOR
from masklog.inference.interpolation import INTERPOLATION, InterpolationJob, keyframes_of
from masklog.inference.points import PointTracker
from masklog.inference.protocols import ClickPoint, EmbeddingStats, EmbeddingWarmer, FrameSource, Prompt
from masklog.inference.registry import Backends
from masklog.inference.tracking import PlanError, TrackJob, frames_done, is_running, plan_track

log = logging.getLogger("masklog.actor")

# Ids of the events the actor writes: fixed functions of what they answer (C5), of a kind no
# client may send (`domain.events.derived_event_id`).


def frame_event_id(track: str, object_id: str, frame: int) -> str:
    return derived_event_id("frame", track, str(frame), object_id)


def end_event_id(track: str) -> str:
    return derived_event_id("end", track)


def segment_event_id(prompt: str) -> str:
    return derived_event_id("segment", prompt)


class Log(Protocol):
    """What the actor needs of the server's ledger: the running tracks, {track: (media,
    requester)}, and a media item's live state (the ledger keeps media items with running tracks
    loaded)."""

    @property
    def running(self) -> dict[str, tuple[str, str]]: ...

    async def state_of(self, media: str) -> LabelState: ...

    async def execute_batch(self, actor: str, commands: list[tuple[Command, str]], *, cause: str | None = None) -> list[Event | DomainError]: ...


class MediaFrames(Protocol):
    def frames(self, media: MediaAdded) -> FrameSource:
        """The shared, cached source of a media item's frames (clicks land on frames people view)."""
        ...

    def open_frames(self, media: MediaAdded) -> FrameSource:
        """A source of its own for one track: reading sequentially, it leaves the shared cache alone."""
        ...


@dataclass(eq=False)
class _Track:
    id: str
    requester: str
    media: str
    job: TrackJob | InterpolationJob | None = None
    frames: FrameSource | None = None
    pending: deque[list[TrackFrameProduced]] = field(default_factory=deque)
    committing: int = 0  # frames handed to the log, not yet committed
    converting: int = 0  # frames the models produced, being made into shapes
    appender: asyncio.Task[None] | None = None
    exhausted: bool = False  # the job has nothing more to produce
    stopped: bool = False  # ended elsewhere (cancelled), or failed here: produce nothing more
    closing: bool = False
    lost: bool = False  # its lease was taken by another actor: stop, without ending it


# Frames warmed around a frame a user is on or clicked: that frame, then the next and the one
# before, and so on (users step through frames both ways). 7 frames at 1024 px are 112 MiB of
# embeddings, within the segmenter's default budget.
WARM_RADIUS = 3
# Media items whose viewed frame waits to be warmed (the newest kept).
MAX_VIEWS = 64


def frames_around(frame: int, count: int, radius: int = WARM_RADIUS) -> list[int]:
    """`frame`, then frame + 1, frame - 1, frame + 2, ... within 0..count-1."""
    order = [frame]
    for step in range(1, radius + 1):
        order += [frame + step, frame - step]
    return [i for i in order if 0 <= i < count]


# Clicks kept per media item while another actor holds its clicks (answered by it, or by this
# actor once that one's lease runs out).
PARKED_PER_MEDIA = 64


class InferenceActor:
    def __init__(
        self,
        ledger: Log,
        media: MediaFrames,
        backends: Backends,
        points: PointTracker | None = None,
        window: int = 8,
        claims: ClaimKeeper | None = None,
        serves: Callable[[str], bool] | None = None,
    ) -> None:
        self._log = ledger
        self._media = media
        self._backends = backends
        self._points = points or PointTracker()
        self._window = window
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="masklog-inference")
        self._shapes = ThreadPoolExecutor(1, thread_name_prefix="masklog-shapes")
        self._tracks: dict[str, _Track] = {}
        self._turns: OrderedDict[str, deque[str]] = OrderedDict()  # requester -> their tracks, in turn
        self._clicks: ClickQueue[Event] = ClickQueue()  # newest prompt per (object, frame), users in turn
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._actor_of: dict[str, str] = {}  # track -> the model actor its events are written as
        # Shared work (see the module's text): the leases held, which algorithms this actor
        # takes, the clicks parked for a media item another actor answers.
        self._claims = claims
        self._serves = serves or (lambda algorithm: True)
        self._parked: dict[str, OrderedDict[str, Event]] = {}
        self._claim_wake = asyncio.Event()
        self._claimer: asyncio.Task[None] | None = None
        self.resumed: set[str] = set()  # tracks this actor took over after another's lease ran out
        # Warming embeddings ahead of clicks (see the module's text): frames users are on, by
        # media item, waiting to be handed to the segmenter, and whether it has more to do.
        self._views: OrderedDict[str, int] = OrderedDict()
        self._warming = False
        self.changed = asyncio.Event()  # set when what `load` says changed much (a takeover)

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Take up every track the log has running (after a restart), then follow new events.
        With claims, the tracks are taken as leases allow (`_claim_loop`)."""
        if self._claims is not None:
            self._claimer = asyncio.create_task(self._claim_loop(), name="masklog-claims")
        else:
            for track_id, (media, requester) in list(self._log.running.items()):  # in the order requested
                log.info("resuming track %s", track_id)
                self._enqueue(track_id, requester, media)
        self._worker = asyncio.create_task(self._work(), name="masklog-inference")

    async def stop(self) -> None:
        """Stop working; tracks still running in the log are resumed at the next start (or by
        another actor, once the leases are let go)."""
        for task in (self._claimer, self._worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        loop = asyncio.get_running_loop()
        for track in list(self._tracks.values()):
            await loop.run_in_executor(self._pool, _close, track)
        self._tracks.clear()
        if self._claims is not None:
            with contextlib.suppress(Exception):  # they run out on their own otherwise
                await self._claims.release_all()
        self._shapes.shutdown(wait=True)
        self._pool.shutdown(wait=True)

    def on_event(self, event: Event) -> None:
        """Called with every committed event, in log order; must be quick."""
        body = event.body
        if isinstance(body, TrackRequested):
            if self._claims is not None:
                self._claim_wake.set()  # claimed in the queue's order, if this actor serves it
            else:
                self._enqueue(event.id, event.actor, body.media)
        elif isinstance(body, (TrackCancelled, TrackCompleted, TrackFailed)):
            track = self._tracks.get(body.track)
            if track is not None:
                track.stopped = True
                self._wake.set()
            if self._claims is not None:
                self._claim_wake.set()  # a place in the queue is free
        elif isinstance(body, SegmentProposed):
            parked = self._parked.get(event.stream.removeprefix("media:"))
            if parked is not None:
                parked.pop(body.prompt, None)  # answered (by whoever held the clicks)
        elif isinstance(body, PromptAdded):
            # A newer prompt on the same object and frame supersedes one still waiting there.
            self._clicks.push(event.actor, (body.object, body.frame), event)
            self._wake.set()

    def viewing(self, media: str, frame: int) -> None:
        """A user is on `frame` of `media` (opened it, or moved there): embed it and the frames
        around it ahead of their clicks, when nothing else waits. Quick; from the loop."""
        if not isinstance(self._backends.segmenter, EmbeddingWarmer):
            return  # nothing to warm (the classical segmenter)
        self._views.pop(media, None)
        self._views[media] = frame
        while len(self._views) > MAX_VIEWS:
            self._views.popitem(last=False)
        self._wake.set()

    def embedding_stats(self) -> EmbeddingStats | None:
        """The segmenter's embedding cache, if it has one."""
        segmenter = self._backends.segmenter
        return segmenter.embedding_stats() if isinstance(segmenter, EmbeddingWarmer) else None

    @property
    def busy(self) -> bool:
        return bool(self._tracks or self._clicks)

    def load(self) -> tuple[int, int, list[str]]:
        """What it works now: tracks, clicks waiting, and the running tracks it took over from
        another actor (the page shows the resume)."""
        resumed = sorted(t for t in self.resumed if t in self._tracks)
        return len(self._tracks), len(self._clicks), resumed

    # ---- scheduling ---------------------------------------------------------------------------

    def _enqueue(self, track_id: str, requester: str, media: str) -> None:
        if track_id in self._tracks:
            return
        self._tracks[track_id] = _Track(track_id, requester, media)
        self._turns.setdefault(requester, deque()).append(track_id)
        self._wake.set()

    def _next_unit(self) -> Callable[[], Coroutine[Any, Any, None]] | None:
        prompt = self._clicks.pop()
        if prompt is not None:
            return lambda: self._answer(prompt)
        for requester in list(self._turns):
            tracks = self._turns[requester]
            for _ in range(len(tracks)):
                track = self._tracks[tracks[0]]
                tracks.rotate(-1)
                if track.stopped and not track.closing:
                    return lambda track=track: self._finish(track)  # type: ignore[misc]
                done = track.exhausted or (track.job is not None and track.job.finished)
                if not track.stopped and not done and track.committing + len(track.pending) + track.converting < self._window:
                    self._turns.move_to_end(requester)
                    return lambda track=track: self._advance(track)  # type: ignore[misc]
        return None

    async def _work(self) -> None:
        while True:
            unit = self._next_unit()
            if unit is None and (self._views or self._warming) and not self._tracks:
                unit = self._warm  # lowest priority: nothing else waits, no track is worked here
            if unit is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await unit()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad unit must not stop the others' work
                log.exception("inference unit failed")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _in_pool(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    # ---- warming embeddings ahead of clicks ------------------------------------------------------

    async def _warm(self) -> None:
        """Hand the frames users are on to the segmenter (newest last: nearest its front), then
        embed one frame."""
        warmer = self._backends.segmenter
        if not isinstance(warmer, EmbeddingWarmer):
            self._views.clear()
            return
        while self._views:
            media_id, frame = self._views.popitem(last=False)
            state = await self._log.state_of(media_id)
            item = state.media.get(media_id)
            if item is None:
                continue
            if self._claims is not None and not await self._claims.take_media(media_id):
                continue  # another actor answers its clicks: it warms them
            await self._in_pool(_want, self._media, item, warmer, frame)
        self._warming = bool(await self._in_pool(warmer.warm_one))

    # ---- prompts (SAM mode) ---------------------------------------------------------------------

    async def _answer(self, prompt_event: Event) -> None:
        prompt: PromptAdded = prompt_event.body  # type: ignore[assignment]
        state = await self._log.state_of(prompt_event.stream.removeprefix("media:"))  # the prompt's media item
        info = state.objects.get(prompt.object)
        if info is not None:
            media_id = info.media
        elif prompt.media is not None and prompt.object in state.pending_objects:
            media_id = prompt.media  # a new object: created when its segment is saved
        else:
            return
        if self._claims is not None and not await self._claims.take_media(media_id):
            self._park(media_id, prompt_event)
            return
        segmenter = self._backends.segmenter
        try:
            mask, score = await self._in_pool(_segment, self._media, state.media[media_id], segmenter, prompt)
        except Exception:
            log.exception("segmenting prompt %s failed", prompt_event.id)
            return
        body = SegmentProposed(prompt=prompt_event.id, object=prompt.object, frame=prompt.frame, mask=mask, score=score, model=segmenter.model)
        self.viewing(media_id, prompt.frame)  # the next click is likely on a frame nearby
        # Committed in the background: the next click is computed meanwhile.
        self._spawn(self._append_quietly(f"model:{segmenter.model}", [(body, segment_event_id(prompt_event.id))], prompt_event.id))

    def _park(self, media: str, prompt_event: Event) -> None:
        """Keep a click another actor answers, in case that one dies before it does."""
        parked = self._parked.setdefault(media, OrderedDict())
        parked[prompt_event.id] = prompt_event
        while len(parked) > PARKED_PER_MEDIA:
            parked.popitem(last=False)

    async def _append_quietly(self, actor: str, commands: list[tuple[Command, str]], cause: str) -> None:
        try:
            results = await self._log.execute_batch(actor, commands, cause=cause)
        except Exception:
            log.exception("appending the answer to %s failed", cause)
            return
        for result in results:
            if isinstance(result, DomainError):  # e.g. the object was deleted meanwhile
                log.info("answer to %s refused: %s", cause, result.message)

    # ---- tracks ----------------------------------------------------------------------------------

    async def _advance(self, track: _Track) -> None:
        """Produce the next frame of a track (opening it first) — or several, while nothing
        else waits for the worker."""
        if track.job is None and not await self._open(track):
            return
        assert track.job is not None
        try:
            await self._in_pool(self._burst, track, asyncio.get_running_loop())
        except Exception as error:
            log.exception("track %s failed", track.id)
            await self._fail(track, f"the tracker failed on frame {track.job.frame}: {error}")

    def _burst(self, track: _Track, loop: asyncio.AbstractEventLoop) -> None:
        """On the worker thread: run the models on the track's next frame, and hand the frame
        to the shapes thread, which turns it into events and passes them to the loop. While the
        track is the only work there is, it goes on without a round trip through the loop per
        frame (up to the commit window); otherwise one frame is one turn. The shapes (RLE
        encoding, outlines) are made while the models work on the next frame."""
        job = track.job
        assert job is not None
        for _ in range(self._window):
            raw = job.advance()
            track.converting += 1
            self._shapes.submit(self._convert, track, job, raw, loop)
            if raw is None or track.stopped or self._clicks or len(self._tracks) > 1:
                return
            if track.committing + len(track.pending) + track.converting >= self._window:
                return

    def _convert(self, track: _Track, job: TrackJob | InterpolationJob, raw: Any, loop: asyncio.AbstractEventLoop) -> None:
        """On the shapes thread, in frame order (`raw`: what the job's `advance` returned)."""
        try:
            outcome: list[TrackFrameProduced] | None | BaseException = None if raw is None else job.convert(raw)
        except Exception as error:  # reported on the loop, where the track is failed
            outcome = error
        loop.call_soon_threadsafe(self._deliver, track, outcome)

    def _deliver(self, track: _Track, outcome: list[TrackFrameProduced] | None | BaseException) -> None:
        track.converting -= 1
        if track.stopped:
            return
        if isinstance(outcome, BaseException):
            log.error("track %s failed making shapes", track.id, exc_info=outcome)
            self._spawn(self._fail(track, f"the tracker's results could not be made into shapes: {outcome}"))
            return
        if outcome is None:
            track.exhausted = True
        elif outcome:
            track.pending.append(outcome)
        if track.appender is None:
            track.appender = asyncio.create_task(self._commit(track))
        self._wake.set()

    async def _open(self, track: _Track) -> bool:
        state = await self._log.state_of(track.media)
        if not is_running(state, track.id):
            track.stopped = True
            return False
        try:
            plan = plan_track(state, track.id)
        except PlanError as error:
            await self._fail(track, str(error))
            return False
        if plan.request.algorithm == INTERPOLATION:
            # Interpolation between keyframes (issue 14): no model, no frames.
            track.job = InterpolationJob(plan, keyframes_of(state, plan))
            self._actor_of[track.id] = INTERPOLATION_ACTOR
            return True
        tracker = self._backends.tracker(plan.request.algorithm)
        if tracker is None:
            # Requested on a server that had this tracker: the track waits in the log for a
            # process that has it (as with `run_models` off), and can be cancelled meanwhile.
            log.warning("track %s names tracker %r, which this server has not loaded; it waits", track.id, plan.request.algorithm)
            track.stopped = True
            return False
        try:
            track.frames = await self._in_pool(self._media.open_frames, plan.media)
        except Exception as error:
            await self._fail(track, f"the media's frames cannot be read: {error}")
            return False
        track.job = TrackJob(plan, track.frames, tracker, self._points)
        self._actor_of[track.id] = f"model:{tracker.model}"
        return True

    async def _commit(self, track: _Track) -> None:
        """Commit a track's produced frames in order, as many at a time as are waiting; end the
        track once the job is exhausted and everything is in."""
        try:
            while track.pending and not track.stopped:
                batch = list(track.pending)
                track.pending.clear()
                track.committing = len(batch)
                commands: list[tuple[Command, str]] = [(b, frame_event_id(track.id, b.object, b.frame)) for bodies in batch for b in bodies]
                try:
                    results = await self._log.execute_batch(self._actor_of[track.id], commands, cause=track.id)
                except Exception:
                    log.exception("committing frames of track %s failed; it resumes when the server restarts", track.id)
                    track.stopped = True
                    return
                finally:
                    track.committing = 0
                for (body, _), result in zip(commands, results, strict=True):
                    if isinstance(result, DomainError):
                        if result.code == ErrorCode.TRACK_NOT_RUNNING:
                            track.stopped = True
                        elif result.code == ErrorCode.EXISTS:
                            pass  # produced before a restart: already in the log
                        elif track.job is not None:
                            log.info("track %s: %s stops: %s", track.id, body.object, result.message)  # type: ignore[union-attr]
                            track.job.stop_object(body.object)  # type: ignore[union-attr]
            if track.exhausted and not track.stopped and not track.pending:
                frames = frames_done(await self._log.state_of(track.media), track.id)
                await self._end(track, TrackCompleted(track=track.id, frames=frames))
        finally:
            track.appender = None
            self._wake.set()
        if track.pending and not track.stopped:  # frames that arrived while the last commit ended
            track.appender = asyncio.create_task(self._commit(track))

    async def _fail(self, track: _Track, reason: str) -> None:
        await self._end(track, TrackFailed(track=track.id, reason=reason[:1000]))

    async def _end(self, track: _Track, body: TrackCompleted | TrackFailed) -> None:
        track.stopped = True
        actor = self._actor_of.get(track.id) or self._model_actor((await self._log.state_of(track.media)).tracks[track.id].request.algorithm)
        try:
            [result] = await self._log.execute_batch(actor, [(body, end_event_id(track.id))], cause=track.id)
        except Exception:
            log.exception("ending track %s failed; it resumes when the server restarts", track.id)
            return
        if isinstance(result, DomainError) and result.code != ErrorCode.TRACK_NOT_RUNNING:
            log.warning("ending track %s refused: %s", track.id, result.message)
        self._wake.set()

    def _model_actor(self, algorithm: str) -> str:
        """The actor that ends a track which never started (its plan failed)."""
        if algorithm == INTERPOLATION:
            return INTERPOLATION_ACTOR
        tracker = self._backends.tracker(algorithm) or self._backends.tracker(TrackerAlias.SIMPLE)
        assert tracker is not None  # the baseline tracker is always loaded
        return f"model:{tracker.model}"

    async def _finish(self, track: _Track) -> None:
        """Release an ended track's models and frames (on the worker thread: models are used there)."""
        track.closing = True
        if track.appender is not None:
            with contextlib.suppress(Exception):
                await track.appender
        await self._in_pool(_close, track)
        self._tracks.pop(track.id, None)
        self._actor_of.pop(track.id, None)
        tracks = self._turns.get(track.requester)
        if tracks is not None:
            with contextlib.suppress(ValueError):
                tracks.remove(track.id)
            if not tracks:
                del self._turns[track.requester]
        if self._claims is not None:
            if not track.lost:
                with contextlib.suppress(Exception):  # the lease runs out on its own otherwise
                    await self._claims.drop_track(track.id)
            self._claim_wake.set()

    # ---- shared work: claims ---------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        """Renew the leases, let idle media items go, take tracks from the queue and parked
        clicks whose holder is gone: every `renew_every_s`, and when a track is asked for or
        ends."""
        assert self._claims is not None
        while True:
            try:
                await self._claim_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # the storage is unreachable for a moment: try again next round
                log.exception("renewing or taking work claims failed")
            self._claim_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._claim_wake.wait(), self._claims.policy.renew_every_s)

    async def _claim_round(self) -> None:
        keeper = self._claims
        assert keeper is not None
        lost_tracks, _ = await keeper.renew()
        for track_id in lost_tracks:
            track = self._tracks.get(track_id)
            if track is not None:
                log.warning("lost the lease on track %s to another worker; stopping it here", track_id)
                track.lost = track.stopped = True
                self._wake.set()
        await keeper.drop_idle_media()
        running = dict(self._log.running)
        for track_id in fair_order(running):
            if len(self._tracks) >= keeper.policy.max_tracks:
                break
            if track_id in self._tracks:
                continue
            media, requester = running[track_id]
            state = await self._log.state_of(media)
            info = state.tracks.get(track_id)
            if info is None or not self._serves(info.request.algorithm):
                continue
            if await keeper.take_track(track_id):
                if frames_done(state, track_id):
                    self.resumed.add(track_id)
                    self.changed.set()
                    log.info("took over track %s from its last produced frame", track_id)
                self._enqueue(track_id, requester, media)
        for media, parked in list(self._parked.items()):
            if not parked:
                del self._parked[media]
            elif await keeper.take_media(media):
                for prompt_event in parked.values():
                    body: PromptAdded = prompt_event.body  # type: ignore[assignment]
                    self._clicks.push(prompt_event.actor, (body.object, body.frame), prompt_event)
                del self._parked[media]
                self._wake.set()


def _close(track: _Track) -> None:
    if track.job is not None:
        track.job.close()
    close = getattr(track.frames, "close", None)
    if close is not None:
        close()


def _want(media: MediaFrames, item: MediaAdded, warmer: EmbeddingWarmer, frame: int) -> None:
    frames = media.frames(item)
    warmer.want(frames, frames_around(frame, len(frames)))


def _segment(media: MediaFrames, item: MediaAdded, segmenter: Any, prompt: PromptAdded) -> tuple[Any, float]:
    frames = media.frames(item)
    query = Prompt(
        points=tuple(ClickPoint(p.x, p.y, p.include) for p in prompt.points),
        box=(prompt.box.x0, prompt.box.y0, prompt.box.x1, prompt.box.y1) if prompt.box is not None else None,
        mask=rle_decode(prompt.mask) if prompt.mask is not None else None,
    )
    candidates = segmenter.segment(frames, prompt.frame, query)
    if not candidates:
        return rle_encode(np.zeros((frames.height, frames.width), dtype=bool)), 0.0
    best = candidates[0]
    score = float(best.score) if np.isfinite(best.score) else 0.0
    return rle_encode(best.mask), min(max(score, -1e6), 1e6)

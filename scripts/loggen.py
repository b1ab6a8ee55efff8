"""Realistic event logs for the benchmarks: what a team labelling video writes.

- `Generator`: one project ("bench"), media items added as work goes on (1 burst in 100), work
  on the objects of the latest ones; keeps the whole state live (`scripts/bench_store.py`).
- `ScaleGenerator`: the same kinds of work spread over many projects and media items, with a few
  media items of a fixed size (one large "hot" item, a few "probe" items) whose events are spread
  over the whole log, for `scripts/bench_scale.py`. It keeps only the states of the media items
  being worked on, so memory does not grow with the log (10M events fit on a small machine).

A burst of work: usually a SAM prompt and its save (a manual save for boxes); sometimes a track of
30 frames forward with its results, completion and acceptance; a delete; an undo. Shapes are
bitmask RLEs of 854x480 masks, polygons and boxes. Every log is valid by construction: each event
is folded into a live state as it is made, and the work is decided from that state.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from masklog.domain import events as ev
from masklog.domain.decide import Undo, decide
from masklog.domain.geometry import mask_to_polygon, rle_encode
from masklog.domain.shapes import BBox, Bitmask
from masklog.domain.state import LabelState

WIDTH, HEIGHT, FRAMES = 854, 480, 300
USERS = [f"user:annotator{i}" for i in range(8)]
MODEL = "model:sam2/sam2.1_hiera_tiny@1.1.0"
# Class kinds and their shapes; a class id is its kind, or "<project>-<kind>" (class ids are global).
KINDS = [("car", "bitmask"), ("person", "polygon"), ("sign", "bbox")]


def sample_masks(rng: random.Random, count: int = 40) -> list[np.ndarray]:
    masks = []
    for _ in range(count):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        centre = (rng.randint(100, WIDTH - 100), rng.randint(80, HEIGHT - 80))
        cv2.ellipse(mask, centre, (rng.randint(20, 90), rng.randint(20, 70)), rng.randint(0, 180), 0, 360, 1, -1)
        if rng.random() < 0.5:
            cv2.circle(mask, (centre[0] + rng.randint(-40, 40), centre[1] + rng.randint(-40, 40)), rng.randint(10, 30), 1, -1)
        masks.append(mask.astype(bool))
    return masks


def kind_of(class_id: str) -> str:
    return class_id.rsplit("-", 1)[-1]


class Generator:
    """Produces a valid, realistic log by construction, keeping a live state to stay valid."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        masks = sample_masks(self.rng)
        self.rles = [rle_encode(m) for m in masks]
        self.polygons = [mask_to_polygon(m, tolerance=1.0) for m in masks]
        self.state = LabelState()
        self.seq = 0
        self.media_count = 0
        self.objects: list[tuple[str, str, str]] = []  # (object, media, class)

    def state_for(self, stream: str) -> LabelState:
        """The live state an event of `stream` is folded into (and work on it decided from)."""
        return self.state

    def _event(self, actor: str, body: ev.Body, stream: str) -> ev.NewEvent:
        event_id = str(uuid.uuid4())
        self.seq += 1
        self.state_for(stream).apply(ev.Event(seq=self.seq, id=event_id, stream=stream, actor=actor, at=0.0, body=body))
        return ev.NewEvent(id=event_id, stream=stream, actor=actor, body=body)

    def add_project(self, project: str, class_prefix: str = "") -> list[ev.NewEvent]:
        stream = f"project:{project}"
        out = [self._event("user:admin", ev.ProjectCreated(project=project, name=project.capitalize()), stream)]
        for kind, shape in KINDS:
            class_id = class_prefix + kind
            out.append(self._event("user:admin", ev.ClassAdded(project=project, class_id=class_id, name=kind, shape=shape, color="#ff0000"), stream))
        return out

    def setup(self) -> list[ev.NewEvent]:
        return self.add_project("bench")

    def add_media(self, project: str, media: str, user: str, objects: int = 20, class_prefix: str = "") -> tuple[list[ev.NewEvent], list[tuple[str, str, str]]]:
        """A video and its objects (cycling through the classes): the events and the objects."""
        out = [self._event("user:admin", ev.MediaAdded(project=project, media=media, name=f"{media}.mp4", kind="video", width=WIDTH, height=HEIGHT, frames=FRAMES, fps=30.0), f"project:{project}")]
        made = []
        for index in range(objects):
            object_id = f"{media}-o{index}"
            class_id = class_prefix + KINDS[index % 3][0]
            out.append(self._event(user, ev.ObjectCreated(object=object_id, media=media, class_id=class_id), f"media:{media}"))
            made.append((object_id, media, class_id))
        return out, made

    def _shape(self, class_id: str, index: int) -> ev.Shape:
        kind = kind_of(class_id)
        if kind == "car":
            return Bitmask(rle=self.rles[index % len(self.rles)])
        if kind == "person":
            return self.polygons[index % len(self.polygons)]
        return BBox(x=index % 700, y=index % 400, w=40, h=30)

    def next_batch(self) -> list[ev.NewEvent]:
        """One user's burst of work: usually a few saves; sometimes a new media item, a track
        with its results and a review, a delete or an undo."""
        rng = self.rng
        roll = rng.random()
        user = rng.choice(USERS)
        if not self.objects or roll < 0.01:
            self.media_count += 1
            out, made = self.add_media("bench", f"video{self.media_count}", user)
            self.objects.extend(made)
            return out
        object_id, media, class_id = rng.choice(self.objects[-200:])
        return self.work(user, roll, object_id, media, class_id)

    def work(self, user: str, roll: float, object_id: str, media: str, class_id: str) -> list[ev.NewEvent]:
        """A burst of work on one object; `roll` (in [0, 1)) picks which kind."""
        rng = self.rng
        stream = f"media:{media}"
        state = self.state_for(stream)
        if object_id not in state.objects:
            return []
        frame = rng.randrange(FRAMES)
        if roll < 0.12:
            # Track 30 frames forward and accept: 1 + 30 + 1 + 1 events.
            start = rng.randrange(FRAMES - 30)
            out = [self._event(user, ev.LabelSaved(object=object_id, frame=start, shape=self._shape(class_id, start), source="manual"), stream)]
            request = self._event(user, ev.TrackRequested(media=media, objects=[object_id], start=start, direction="forward", range=30), stream)
            out.append(request)
            for offset in range(1, 30):
                shape = self._shape(class_id, start + offset)
                out.append(self._event(MODEL, ev.TrackFrameProduced(track=request.id, object=object_id, frame=start + offset, shape=shape, score=0.9, model="sam2/tiny@1.1.0"), stream))
            out.append(self._event(MODEL, ev.TrackCompleted(track=request.id, frames=30), stream))
            out.append(self._event(user, ev.TrackedAccepted(track=request.id), stream))
            return out
        if roll < 0.15:
            label = state.label(object_id, frame)
            if label is not None:
                return [self._event(user, ev.LabelDeleted(object=object_id, frame=frame), stream)]
        if roll < 0.17:
            if state.stacks_of(user, media).undo:
                return [self._event(user, decide(state, user, Undo(media=media)), stream)]
        out = []
        if kind_of(class_id) != "sign":
            prompt = self._event(user, ev.PromptAdded(object=object_id, frame=frame, points=[ev.Point(x=400, y=200), ev.Point(x=420, y=230, include=False)]), stream)
            out.append(prompt)
            out.append(self._event(user, ev.LabelSaved(object=object_id, frame=frame, shape=self._shape(class_id, frame), source="sam", model="sam2/tiny@1.1.0", prompt=prompt.id, score=0.93), stream))
        else:
            out.append(self._event(user, ev.LabelSaved(object=object_id, frame=frame, shape=self._shape(class_id, frame), source="manual"), stream))
        return out


@dataclass
class _Item:
    """A media item of the scale log: its project, how many of its own events it should get, and
    its objects."""

    media: str
    project: str
    target: int
    written: int = 0
    objects: list[tuple[str, str, str]] = field(default_factory=list)


HOT = "hot"


def probe_name(index: int) -> str:
    return f"probe{index}"


class ScaleGenerator(Generator):
    """A log of about `total` events over `projects` projects and `media` media items.

    - `hot` (project p00): about `hot_events` events of its own, spread over the whole log: the
      large item a benchmark opens and replays.
    - `probe1`..`probe<probes>`: about `probe_events` each, also spread over the whole log: with
      `hot`, a working set of fixed size whatever the log's length.
    - the other items (`m00001`, ...) share the rest evenly; they are worked on a few at a time
      (`window`), each finished before the next is added, as a team goes through its videos.

    Only the states of the items being worked on are kept (each with its project's classes).
    """

    def __init__(self, total: int, *, media: int = 2000, projects: int = 20, hot_events: int = 50_000, probe_events: int = 5_000, probes: int = 9, window: int = 8, seed: int = 11) -> None:
        super().__init__(seed)
        if media < probes + 2:
            raise ValueError(f"{media} media items cannot hold the hot item, {probes} probes and one more")
        ordinary = media - 1 - probes
        rest = total - hot_events - probes * probe_events - 4 * projects - media
        if rest < ordinary * 30:
            raise ValueError(f"{total} events are too few for {hot_events} + {probes} x {probe_events} fixed ones and {ordinary} more media items")
        self.total = total
        self.project_ids = [f"p{index:02d}" for index in range(projects)]
        self.project_setup: dict[str, list[ev.Event]] = {}
        self.states: dict[str, LabelState] = {}
        self.special = [_Item(HOT, self.project_ids[0], hot_events)]
        self.special += [_Item(probe_name(i), self.project_ids[i % projects], probe_events) for i in range(1, probes + 1)]
        per_item = rest // ordinary
        self.queue = [_Item(f"m{i:05d}", self.project_ids[i % projects], per_item) for i in range(1, ordinary + 1)]
        self.queue.reverse()  # popped from the end: m00001 first
        self.window_size = window
        self.window: list[_Item] = []
        self.written = 0

    def state_for(self, stream: str) -> LabelState:
        return self.states[stream.removeprefix("media:")]

    def _event(self, actor: str, body: ev.Body, stream: str) -> ev.NewEvent:
        if not stream.startswith("project:"):
            return super()._event(actor, body, stream)
        # Project events: kept (the setup ones) to give each new item's state its project's
        # classes; a MediaAdded goes into its item's new state.
        event_id = str(uuid.uuid4())
        self.seq += 1
        event = ev.Event(seq=self.seq, id=event_id, stream=stream, actor=actor, at=0.0, body=body)
        if isinstance(body, ev.MediaAdded):
            state = self.states[body.media] = LabelState()
            for earlier in self.project_setup[body.project]:
                state.apply(earlier)
            state.apply(event)
        else:
            self.project_setup.setdefault(stream.removeprefix("project:"), []).append(event)
        return ev.NewEvent(id=event_id, stream=stream, actor=actor, body=body)

    def _open(self, item: _Item) -> list[ev.NewEvent]:
        objects = max(20, item.target // 500)
        out, item.objects = self.add_media(item.project, item.media, USERS[0], objects, class_prefix=f"{item.project}-")
        item.written += len(out) - 1
        return out

    def setup(self) -> list[ev.NewEvent]:
        out = []
        for project in self.project_ids:
            out += self.add_project(project, class_prefix=f"{project}-")
        for item in self.special:
            out += self._open(item)
        return out

    def next_batch(self) -> list[ev.NewEvent]:
        """One burst on the hot item, a probe or an item of the window, each chosen in proportion
        to the events it still has to get, so the fixed-size items spread over the whole log."""
        rng = self.rng
        out: list[ev.NewEvent] = []
        while len(self.window) < self.window_size and self.queue:
            item = self.queue.pop()
            self.window.append(item)
            out += self._open(item)
        if out:
            return out
        remaining = max(1, self.total - self.seq)
        pick = rng.random() * remaining
        item = None
        for special in self.special:
            pick -= max(0, special.target - special.written)
            if pick < 0:
                item = special
                break
        if item is None:
            item = rng.choice(self.window) if self.window else rng.choice(self.special)
        roll = rng.random()
        user = rng.choice(USERS)
        object_id, media, class_id = rng.choice(item.objects)
        batch = self.work(user, roll, object_id, media, class_id)
        item.written += len(batch)
        if item in self.window and item.written >= item.target and (self.queue or len(self.window) > 1):
            self.window.remove(item)
            del self.states[item.media]  # finished: its state is no longer needed
        return batch


async def fill(append: Callable[[Sequence[ev.NewEvent]], Awaitable[object]], generator: Generator, total: int, batch: int = 5000, overlap: bool = False) -> int:
    """Append generated work until the log holds at least `total` events (a burst is never cut);
    returns how many. `overlap`: generate the next batch while the last one is being written
    (one append in flight at a time)."""
    pending = generator.setup()
    written = 0
    in_flight: asyncio.Future[object] | None = None
    while written + len(pending) < total:
        pending.extend(generator.next_batch())
        if len(pending) >= batch:
            if in_flight is not None:
                await in_flight
            if overlap:
                in_flight = asyncio.ensure_future(append(pending))
            else:
                await append(pending)
            written += len(pending)
            pending = []
    if in_flight is not None:
        await in_flight
    if pending:
        await append(pending)
        written += len(pending)
    return written

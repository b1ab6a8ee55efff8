"""What this server can run (issue 14 point 3: say which tracker runs): its trackers, each
available or not with the reason, the one a client should default to, and the segmenter that
answers clicks. Served at GET /api/capabilities and in the socket's `welcome`, so the page
offers only what runs here and says why the rest does not. Built from the registry
(`inference.registry.BACKENDS`) and what this process loaded, nothing named here."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from masklog.domain.events import TrackerAlias
from masklog.domain.interpolation import LINEAR_MODEL, MORPH_MODEL
from masklog.inference.registry import (
    BACKEND_NEEDS,
    BACKENDS,
    BASELINE_TRACKER,
    INTERPOLATION,
    MODEL_FREE_METHODS,
    Backends,
    backend_of_tracker,
    tracker_names,
    tracker_title,
)
from masklog.server.claims import WorkerInfo


class TrackerInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # what a track request gives as `algorithm`
    label: str
    backend: str
    available: bool
    why: str | None = None  # why it is not available here, and how to have it
    model: str | None = None  # the provenance id its results record (TrackFrameProduced.model)


class SegmenterInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # the backend
    available: bool
    why: str | None = None
    model: str | None = None  # the provenance id of SAM-mode labels


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    trackers: list[TrackerInfo]
    default_tracker: str  # the best available: what the configured backend tracks with
    aliases: dict[str, str]  # 'simple' and 'advanced' (old clients): the tracker each names here
    segmenter: SegmenterInfo  # the one answering clicks
    segmenters: list[SegmenterInfo]  # one per registered backend
    # Methods of automated labelling that need no model (interpolation between keyframes):
    # every server has them; a track request names them like a tracker.
    methods: list[TrackerInfo] = []


def capabilities(backends: Backends) -> Capabilities:
    running = backends.backend
    trackers = [TrackerInfo(name=o.name, label=o.label, backend=o.backend, available=o.available, why=o.why, model=o.model) for o in backends.offers()]
    segmenter = SegmenterInfo(name=running, available=True, model=backends.segmenter.model)
    segmenters = [
        segmenter
        if name == running
        else SegmenterInfo(name=name, available=False, why=f"this server runs the {running} backend: start it with --backend {name}{BACKEND_NEEDS.get(name, '')}")
        for name in BACKENDS
    ]
    if running not in BACKENDS:
        segmenters.insert(0, segmenter)
    aliases = {alias.value: backends.resolve(alias.value) for alias in TrackerAlias}
    default = backends.advanced if backends.advanced in backends.trackers else BASELINE_TRACKER
    methods = [TrackerInfo(name=name, label=METHOD_LABELS.get(name, name), backend="built-in", available=True, model=METHOD_MODELS.get(name)) for name in MODEL_FREE_METHODS]
    return Capabilities(trackers=trackers, default_tracker=default, aliases=aliases, segmenter=segmenter, segmenters=segmenters, methods=methods)


def workers_capabilities(workers: Sequence[WorkerInfo]) -> Capabilities:
    """What the live workers run, together (a server whose model work is done by `masklog
    worker` processes): a tracker is available when one of them runs it; the default is the
    best one any runs (a model beyond the baseline first)."""
    served = {name for worker in workers for name in worker.trackers}
    trackers = []
    for name in tracker_names():
        entry = backend_of_tracker(name)
        available = name in served
        why = None if available else f"no live worker runs it: start one with `masklog worker --backend {entry.name}{BACKEND_NEEDS.get(entry.name, '')}`"
        trackers.append(TrackerInfo(name=name, label=tracker_title(name), backend=entry.name, available=available, why=why))
    best = next((t.name for t in trackers if t.available and t.name != BASELINE_TRACKER), None)
    default = best or BASELINE_TRACKER
    answering = next((worker for worker in workers if worker.segmenter), None)
    segmenters = []
    for name in BACKENDS:
        live = next((worker for worker in workers if worker.backend == name and worker.segmenter), None)
        segmenters.append(
            SegmenterInfo(name=name, available=True, model=live.segmenter)
            if live is not None
            else SegmenterInfo(name=name, available=False, why=f"no live worker runs the {name} backend")
        )
    if answering is not None:
        segmenter = SegmenterInfo(name=answering.backend, available=True, model=answering.segmenter)
    else:
        segmenter = SegmenterInfo(name=BASELINE_TRACKER, available=False, why="no live worker answers clicks: start one with `masklog worker`")
    # 'advanced' asks for a model beyond the baseline: with no worker running one, it names none.
    aliases = {TrackerAlias.SIMPLE.value: BASELINE_TRACKER, **({TrackerAlias.ADVANCED.value: best} if best else {})}
    methods = [
        TrackerInfo(name=name, label=METHOD_LABELS.get(name, name), backend="built-in", available=any(name in w.trackers for w in workers), model=METHOD_MODELS.get(name))
        for name in MODEL_FREE_METHODS
    ]
    return Capabilities(trackers=trackers, default_tracker=default, aliases=aliases, segmenter=segmenter, segmenters=segmenters, methods=methods)


METHOD_LABELS = {INTERPOLATION: "Interpolation between keyframes"}
# What its results record: linear moves for boxes and points, a morph for polygons and masks.
METHOD_MODELS = {INTERPOLATION: f"{LINEAR_MODEL} or {MORPH_MODEL}"}

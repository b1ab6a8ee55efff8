"""What this server can run (issue 14 point 3: say which tracker runs): its trackers, each
available or not with the reason, the one a client should default to, and the segmenter that
answers clicks. Served at GET /api/capabilities and in the socket's `welcome`, so the page
offers only what runs here and says why the rest does not. Built from the registry
(`inference.registry.BACKENDS`) and what this process loaded, nothing named here."""

from __future__ import annotations

import msgspec

from masklog.domain.events import TrackerAlias
from masklog.domain.interpolation import LINEAR_MODEL, MORPH_MODEL
from masklog.inference.registry import BACKEND_NEEDS, BACKENDS, BASELINE_TRACKER, INTERPOLATION, MODEL_FREE_METHODS, Backends


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


METHOD_LABELS = {INTERPOLATION: "Interpolation between keyframes"}
# What its results record: linear moves for boxes and points, a morph for polygons and masks.
METHOD_MODELS = {INTERPOLATION: f"{LINEAR_MODEL} or {MORPH_MODEL}"}

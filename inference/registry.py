"""The model backends and their trackers, by name (E4, T7): the one list that the settings
(`server.settings`, which backend names are valid), the CLI (`--backend` and `eval-vos
--tracker` choices), the server (which tracker names a `track_requested` may give) and the
inference actor (which tracker runs a track) all read.

A backend is a package of its own (`inference/classical/`, `inference/sam2/`) that offers a
`Segmenter` (clicks) and one or more `Tracker`s, each tracker under a registry name. A server
loads one backend, the one its settings name; the classical tracker is always loaded as well.

Tracks name their tracker in the log (`TrackRequested.algorithm`) by registry name or by one of
the two aliases the first schema had, which stay valid on every server:

- 'simple': the classical tracker;
- 'advanced': the best mask tracker the server has loaded, its backend's first tracker (SAM 2
  when the server runs SAM 2, else classical).

Besides the trackers, every server offers the methods in `MODEL_FREE_METHODS`, which need no
model and no frames: 'interpolation' (issue 14) fills the frames between an object's keyframes
(`inference.interpolation`, run by the inference actor in place of a tracker).

Adding a backend: a package under `inference/` with its Segmenter and Tracker, a loader
function below that imports it (so its dependencies load only on a server configured with
it), and one entry in `BACKENDS`. Nothing in the event schema names a backend or a tracker.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from masklog.domain.events import TrackerAlias
from masklog.domain.interpolation import INTERPOLATION
from masklog.inference.protocols import Segmenter, Tracker

log = logging.getLogger(__name__)

# Registry names are short and plain: they are written into the log by clients.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")

# Always loaded: what 'simple' names, and 'advanced' on a server without a better tracker.
BASELINE_TRACKER = "classical"
DEFAULT_BACKEND = "classical"
# Methods of automated labelling every server has, whatever it loaded: no model, no frames.
MODEL_FREE_METHODS: tuple[str, ...] = (INTERPOLATION,)


# The segmenter's image embeddings (SAM): at 1024 px one frame's are about 16 MiB, so the default
# keeps 16 frames; the limit keeps a typo from taking a GPU's whole memory.
DEFAULT_EMBEDDING_CACHE_MB = 256
MAX_EMBEDDING_CACHE_MB = 64 * 1024


@dataclass(frozen=True)
class ModelOptions:
    """What a backend's loader gets from the settings (flags and MASKLOG_* variables)."""

    checkpoint: Path | None = None
    config: str | None = None
    device: str | None = None  # None: CUDA when present, else CPU
    # Bytes of image embeddings a segmenter keeps (clicked frames, and frames embedded ahead of
    # clicks): `--embedding-cache-mb`, between 1 MiB and MAX_EMBEDDING_CACHE_MB.
    embedding_cache_bytes: int = DEFAULT_EMBEDDING_CACHE_MB * 1024**2
    compile: bool = False  # run the model through torch.compile (SAM 2: inference.sam2.model.CompileOptions)
    compile_cache: Path | None = None  # where compiled code is kept between processes
    compile_mode: str | None = "max-autotune"  # torch.compile's mode (sam2's choice by default)
    compile_backend: str = "inductor"  # torch.compile's backend ("eager": tests of the wiring)
    image_size: int | None = None  # SAM 2's input size; None: the config's (tests use less)


@dataclass(frozen=True)
class Loaded:
    """What a backend's loader returns: its segmenter and its trackers by registry name."""

    segmenter: Segmenter
    trackers: dict[str, Tracker]


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str  # one line, for `--help` and the docs
    trackers: tuple[str, ...]  # the registry names of the trackers it offers, best first
    load: Callable[[ModelOptions], Loaded] = field(repr=False)


def _load_classical(options: ModelOptions) -> Loaded:
    from masklog.inference.classical.segmenter import ClassicalSegmenter
    from masklog.inference.classical.tracker import ClassicalTracker

    return Loaded(ClassicalSegmenter(), {"classical": ClassicalTracker()})


def _load_sam2(options: ModelOptions) -> Loaded:
    """Raises `inference.sam2.model.Sam2LoadError` when the checkpoint cannot be used."""
    # Imported here: torch loads only in processes that use SAM 2.
    from masklog.inference.sam2.image import Sam2Segmenter
    from masklog.inference.sam2.model import DEFAULT_CONFIG, CompileOptions, load_sam2
    from masklog.inference.sam2.video import Sam2Tracker

    compiled = None
    if options.compile:
        compiled = CompileOptions(backend=options.compile_backend, mode=options.compile_mode, cache_dir=options.compile_cache)
    model = load_sam2(options.config or DEFAULT_CONFIG, options.checkpoint, options.device, options.image_size, compile=compiled)
    if compiled is not None:
        from masklog.inference.sam2.warmup import warm_up

        # Compiled at start-up (or loaded from the cache), not on the first user's click.
        log.info("SAM 2 compiled and warmed up in %.1f s", warm_up(model))
    return Loaded(Sam2Segmenter(model, cache_bytes=options.embedding_cache_bytes), {"sam2": Sam2Tracker(model)})


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("classical", "OpenCV only, no weights: GrabCut clicks, optical flow + colour tracking", ("classical",), _load_classical),
        Backend("sam2", "SAM 2 (torch): clicks and tracking, needs a checkpoint", ("sam2",), _load_sam2),
    )
}


# How the page names a tracker (registry name -> words); a tracker without one is shown by name.
TRACKER_TITLES: dict[str, str] = {"classical": "Classical (optical flow + colour)", "sam2": "SAM 2"}
# What a server needs besides `--backend NAME` to run a backend (said when it is not running).
BACKEND_NEEDS: dict[str, str] = {"sam2": " --sam2-checkpoint PATH (torch installed)"}


def tracker_title(name: str) -> str:
    return TRACKER_TITLES.get(name, name)


class UnknownBackend(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown backend {name!r}: use {_either(BACKENDS)}")


def backend_named(name: str) -> Backend:
    if name not in BACKENDS:
        raise UnknownBackend(name)
    return BACKENDS[name]


def tracker_names() -> tuple[str, ...]:
    """Every registered tracker's name, in registry order."""
    return tuple(dict.fromkeys(name for entry in BACKENDS.values() for name in entry.trackers))


def every_tracker_name() -> frozenset[str]:
    """Every name a track request may give anywhere: the registered trackers, the aliases and
    the model-free methods (what a server that shares its log with workers accepts)."""
    return frozenset({*TrackerAlias, *tracker_names(), *MODEL_FREE_METHODS})


def backend_of_tracker(name: str) -> Backend:
    """The backend that offers the tracker `name` (a registry name, not an alias)."""
    for entry in BACKENDS.values():
        if name in entry.trackers:
            return entry
    raise ValueError(f"unknown tracker {name!r}: use {_either(tracker_names())}")


def offered_trackers(backend_name: str) -> frozenset[str]:
    """The tracker names a server configured with `backend_name` accepts in a track request:
    the aliases, the baseline tracker, the backend's trackers and the model-free methods. Known from the registry
    alone, without loading anything."""
    return frozenset({*TrackerAlias, BASELINE_TRACKER, *backend_named(backend_name).trackers, *MODEL_FREE_METHODS})


@dataclass(frozen=True)
class Backends:
    """What a server process loaded: the segmenter answering clicks, the trackers by registry
    name, and which of them 'advanced' names."""

    segmenter: Segmenter
    trackers: dict[str, Tracker]
    advanced: str = BASELINE_TRACKER

    def __post_init__(self) -> None:
        missing = {BASELINE_TRACKER, self.advanced} - set(self.trackers)
        if missing:
            raise ValueError(f"trackers {sorted(missing)} are not loaded")

    def resolve(self, name: str) -> str:
        """The registry name `name` stands for ('simple' and 'advanced' are aliases)."""
        if name == TrackerAlias.SIMPLE:
            return BASELINE_TRACKER
        if name == TrackerAlias.ADVANCED:
            return self.advanced
        return name

    def tracker(self, name: str) -> Tracker | None:
        """The loaded tracker that `name` (a registry name or an alias) names, or None."""
        return self.trackers.get(self.resolve(name))

    def names(self) -> frozenset[str]:
        """The tracker names this process can run: its trackers', the aliases and the model-free methods."""
        return frozenset({*TrackerAlias, *self.trackers, *MODEL_FREE_METHODS})

    @property
    def backend(self) -> str:
        """The backend this process runs: the one whose tracker 'advanced' names."""
        for entry in BACKENDS.values():
            if self.advanced in entry.trackers:
                return entry.name
        return DEFAULT_BACKEND

    def offers(self) -> list[TrackerOffer]:
        """Every tracker, registered or loaded (registry order, then any other loaded one),
        with whether this process runs it and, when not, why (issue 14: say which tracker
        runs). Generic over `BACKENDS`: a new entry is listed without changes here."""
        offers: list[TrackerOffer] = []
        for name in dict.fromkeys([*tracker_names(), *self.trackers]):
            tracker = self.trackers.get(name)
            if tracker is not None:
                offers.append(TrackerOffer(name, tracker_title(name), _backend_name_of(name), True, None, tracker.model))
                continue
            entry = backend_of_tracker(name)
            why = f"this server runs the {self.backend} backend: start it with --backend {entry.name}{BACKEND_NEEDS.get(entry.name, '')} to use {tracker_title(name)}"
            offers.append(TrackerOffer(name, tracker_title(name), entry.name, False, why, None))
        return offers


@dataclass(frozen=True)
class TrackerOffer:
    """One tracker as the server offers it to clients (REST and the socket's welcome)."""

    name: str  # the registry name a track request gives as `algorithm`
    label: str
    backend: str
    available: bool
    why: str | None  # None when available; else why not, and how to have it
    model: str | None  # the provenance id its results record, when available


def _backend_name_of(name: str) -> str:
    """The backend that registers tracker `name`; its own name for a tracker loaded unregistered."""
    for entry in BACKENDS.values():
        if name in entry.trackers:
            return entry.name
    return name


def load_backends(name: str = DEFAULT_BACKEND, options: ModelOptions | None = None) -> Backends:
    """Load the backend `name` (and the baseline tracker). A configured backend that cannot load
    raises (e.g. `Sam2LoadError`): an error at start-up, never a silent fallback."""
    entry = backend_named(name)
    options = options or ModelOptions()
    loaded = entry.load(options)
    trackers = dict(loaded.trackers)
    if BASELINE_TRACKER not in trackers:
        trackers[BASELINE_TRACKER] = load_tracker(BASELINE_TRACKER, options)
    return Backends(loaded.segmenter, trackers, advanced=entry.trackers[0])


def load_tracker(name: str, options: ModelOptions | None = None) -> Tracker:
    """One tracker by registry name or 'simple' (evaluation, benchmarks)."""
    registered = BASELINE_TRACKER if name == TrackerAlias.SIMPLE else name
    return backend_of_tracker(registered).load(options or ModelOptions()).trackers[registered]


def _either(names: Iterable[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]

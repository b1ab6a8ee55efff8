"""Loading SAM 2 (the real `sam2` package) for the segmenter and the tracker.

One `Sam2Model` holds the network once; `Sam2Segmenter` (inference.sam2.image) and
`Sam2Tracker` (inference.sam2.video) share it. The network is built as sam2's
`SAM2VideoPredictor` (a `SAM2Base` subclass): the image path only uses the parts every
`SAM2Base` has, so one set of weights serves clicks and tracking.

Weights come from a checkpoint file named in settings (users download `sam2.1_hiera_*.pt`
themselves; nothing is downloaded here). A missing or wrong file is a `Sam2LoadError` at
startup that names the path and the reason. Random weights (tests, benchmarks) must be asked
for explicitly with `random_weights=True`.

On CUDA the model runs under bf16 autocast (how SAM 2 is meant to run on GPUs); on CPU in
float32. `image_size` can be reduced (a multiple of 32, at least 64) so tests run fast on CPU.
On request (`CompileOptions`) the network is sam2's `torch.compile`d build (`vos_optimized`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import re
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sam2.sam2_video_predictor import SAM2VideoPredictor

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "sam2.1_hiera_t"
_SIZE_ALIASES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}


class Sam2LoadError(RuntimeError):
    """SAM 2 cannot be loaded: names what was being loaded (a path or a config) and why."""

    def __init__(self, what: str | Path | None, reason: str) -> None:
        self.what = None if what is None else str(what)
        self.reason = reason
        super().__init__(f"cannot load SAM 2 from {self.what}: {reason}" if self.what else f"cannot load SAM 2: {reason}")


@dataclass(eq=False)
class Sam2Model:
    """A loaded SAM 2 network and how to run it.

    `lock` serialises use of the network: a click and a tracking step from different threads
    then never interleave inside the model (and a click waits for at most one tracked frame).
    """

    net: SAM2VideoPredictor
    config: str  # short config name, e.g. "sam2.1_hiera_t"
    device: torch.device
    random_weights: bool
    # Frames for tracking resized and normalised on the device (inference.sam2.video._LazyVideo):
    # on by default on CUDA, where it keeps the CPU to decoding; not bit-exact with sam2's
    # PIL resize, so off elsewhere (the CPU fidelity tests stay exact).
    preprocess_on_device: bool = False
    compiled: CompileOptions | None = None  # how the network was compiled, None: not at all
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Threads inside `running` waiting for the lock: background work (warming embeddings) gives
    # way while any does.
    _waiting: int = field(default=0, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def waiting(self) -> int:
        """How many callers of `running` wait for the lock now."""
        return self._waiting

    @property
    def image_size(self) -> int:
        return int(self.net.image_size)

    @property
    def version(self) -> str:
        return importlib.metadata.version("sam2")

    @property
    def model_id(self) -> str:
        """`sam2/<config>@<sam2 version>`, usable in a `model:` actor; random weights say so."""
        name = self.config.replace("+", "plus")  # actor ids allow [A-Za-z0-9_.-] only
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
        if self.random_weights:
            name += "-random"
        return f"sam2/{name}@{self.version}"

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The context of one step of inference: the lock, no autograd, bf16 autocast on CUDA."""
        with self._count_lock:
            self._waiting += 1
        try:
            self.lock.acquire()
        finally:
            with self._count_lock:
                self._waiting -= 1
        try:
            with torch.inference_mode():
                if self.device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        yield
                else:
                    yield
        finally:
            self.lock.release()


@dataclass(frozen=True)
class CompileOptions:
    """Running the network through `torch.compile` (off unless asked for).

    The network is sam2's own `SAM2VideoPredictorVOS` (`vos_optimized=True`): the image
    encoder, memory encoder, memory attention, prompt encoder and mask decoder compiled whole
    (fullgraph; memory attention with dynamic shapes, since the number of memories varies),
    with the clones that let the compiled outputs be kept across calls. With sam2's settings
    (inductor, "max-autotune") its compiled functions are used as they are; another backend or
    mode compiles the same five functions that way instead (tests: "eager" checks the wiring in
    seconds).

    The first call of each shape compiles (`scripts/bench_backends.py --compile` measures how
    long; `inference.sam2.warmup` makes a server pay it at start-up, not on a user's first click);
    inductor's FX graph, AOT autograd and autotuning caches are kept on disk in
    `cache_dir` (TORCHINDUCTOR_CACHE_DIR) so a restarted process loads them instead. The cache
    directory is process-wide: the last model loaded with one sets it.
    """

    backend: str = "inductor"
    mode: str | None = "max-autotune"
    cache_dir: Path | None = None  # None: TORCHINDUCTOR_CACHE_DIR as set, else torch's default


# sam2's VOS build: the functions it compiles, and whether each takes dynamic shapes.
_VOS_COMPILED = {
    "image_encoder": False,
    "memory_encoder": False,
    "memory_attention": True,  # the number of memories varies
    "sam_prompt_encoder": False,
    "sam_mask_decoder": False,
}


def compile_cache_env(options: CompileOptions) -> None:
    """Point inductor's on-disk caches at `options.cache_dir` (created) and turn them on."""
    if options.cache_dir is not None:
        options.cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(options.cache_dir)
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True


def _recompile(net: torch.nn.Module, options: CompileOptions) -> None:
    # The modules' own class methods are the uncompiled functions VOS wrapped.
    for name, dynamic in _VOS_COMPILED.items():
        module = getattr(net, name)
        module.forward = torch.compile(
            types.MethodType(type(module).forward, module), backend=options.backend, mode=options.mode, fullgraph=True, dynamic=dynamic
        )


def available_configs() -> list[str]:
    """Short names of the model configs shipped with the installed sam2 package."""
    return sorted(p.stem for p in _config_dir().rglob("*.yaml") if "training" not in p.parent.name)


def resolve_config(config: str) -> tuple[str, str]:
    """(short name, hydra config path) for "sam2.1_hiera_t", "sam2.1/sam2.1_hiera_t.yaml",
    "configs/sam2.1/sam2.1_hiera_t.yaml" and the like."""
    stem = Path(config).name.removesuffix(".yaml")
    for long, short in _SIZE_ALIASES.items():  # checkpoint-style names: sam2.1_hiera_tiny
        if stem.endswith(f"_hiera_{long}"):
            stem = stem.removesuffix(long) + short
    root = _config_dir()
    matches = [p for p in root.rglob(f"{stem}.yaml") if "training" not in p.parent.name]
    if not matches:
        raise Sam2LoadError(config, f"unknown config; available: {', '.join(available_configs())}")
    return stem, str(matches[0].relative_to(root.parent))


def load_sam2(
    config: str = DEFAULT_CONFIG,
    checkpoint: Path | str | None = None,
    device: str | None = None,
    image_size: int | None = None,
    *,
    random_weights: bool = False,
    preprocess_on_device: bool | None = None,
    compile: CompileOptions | None = None,
) -> Sam2Model:
    """Build SAM 2 from a packaged config and load the checkpoint's weights.

    `checkpoint=None` is refused unless `random_weights=True` (tests and benchmarks): a
    server with no checkpoint configured must not silently label with a random network.
    """
    if checkpoint is None and not random_weights:
        raise Sam2LoadError(None, "no checkpoint configured (random weights must be asked for explicitly)")
    if checkpoint is not None and random_weights:
        raise ValueError("give either a checkpoint or random_weights=True, not both")
    state_dict = _read_checkpoint(Path(checkpoint)) if checkpoint is not None else None

    try:
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as exc:
        raise Sam2LoadError(config, f"the sam2 package is not installed ({exc})") from exc
    name, hydra_path = resolve_config(config)
    dev = torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Sam2LoadError(config, f"device {device!r} asked for, but CUDA is not available")

    overrides = [
        # T9: a correction on an already tracked frame becomes a conditioning frame, so that
        # propagating again from it carries the correction forward.
        "++model.add_all_frames_to_correct_as_cond=true",
    ]
    if image_size is not None:
        if image_size < 64 or image_size % 32:
            raise Sam2LoadError(config, f"image_size must be a multiple of 32 and at least 64, got {image_size}")
        overrides.append(f"++model.image_size={image_size}")
    if compile is not None:
        compile_cache_env(compile)
        log.info("SAM 2 compiled with torch.compile (%s, %s); the first call of each shape compiles", compile.backend, compile.mode)
    net = build_sam2_video_predictor(
        hydra_path, ckpt_path=None, device=str(dev), hydra_overrides_extra=overrides, vos_optimized=compile is not None
    )
    if compile is not None and (compile.backend, compile.mode) != ("inductor", "max-autotune"):
        _recompile(net, compile)
    if state_dict is not None:
        _load_weights(net, state_dict, Path(checkpoint), name)  # type: ignore[arg-type]
    net.eval()
    if net.fill_hole_area > 0 and (dev.type != "cuda" or not _has_sam2_extension()):
        # Hole filling is a CUDA kernel of sam2's optional extension; without it (or on CPU)
        # sam2 skips the step with a warning on every frame. Off gives the same masks, quietly.
        net.fill_hole_area = 0
    return Sam2Model(
        net=net,
        config=name,
        device=dev,
        random_weights=checkpoint is None,
        preprocess_on_device=dev.type == "cuda" if preprocess_on_device is None else preprocess_on_device,
        compiled=compile,
    )


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise Sam2LoadError(path, "file not found")
    if not path.is_file():
        raise Sam2LoadError(path, "not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise Sam2LoadError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise Sam2LoadError(path, "not a SAM 2 checkpoint (no 'model' state dict in it)")
    return data["model"]


def _load_weights(net: torch.nn.Module, state_dict: dict[str, Any], path: Path, config: str) -> None:
    try:
        result = net.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches: a checkpoint of another model size
        raise Sam2LoadError(path, f"weights do not fit config {config}: {_first_lines(str(exc))}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise Sam2LoadError(
            path,
            f"weights do not fit config {config}: "
            f"missing {_some(result.missing_keys)}, unexpected {_some(result.unexpected_keys)}",
        )


def _some(keys: list[str], n: int = 5) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _first_lines(text: str, n: int = 4) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:n]) + (" ..." if len(lines) > n else "")


def _config_dir() -> Path:
    import sam2

    return Path(sam2.__path__[0]) / "configs"


def _has_sam2_extension() -> bool:
    try:
        import sam2._C  # noqa: F401
    except ImportError:
        return False
    return True

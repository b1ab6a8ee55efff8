"""The `masklog` command: serve, demo, worker, user, eval-vos, eval-clicks, export, import-log, snapshots,
migrate, copy-log."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypedDict

from masklog.inference.registry import BACKENDS, DEFAULT_BACKEND, DEFAULT_EMBEDDING_CACHE_MB, MAX_EMBEDDING_CACHE_MB, tracker_names
from masklog.server.settings import COMPILE_MODES, ModelSettings, Settings, env, model_settings_from, storage_from, token_lifetime_s
from masklog.server.storage import STORAGE_BACKENDS


def _data_dir(value: str | None) -> Path:
    return Path(value or env("DATA") or "masklog-data").resolve()


def _add_database_flags(parser: argparse.ArgumentParser) -> None:
    # No default here: storage_from decides (a --database URL alone means postgresql).
    parser.add_argument("--storage", choices=sorted(STORAGE_BACKENDS), help=f"where the log and the accounts are kept (env MASKLOG_STORAGE; default {Settings.storage}, or postgresql with --database)")
    parser.add_argument("--database", help="the event log and the accounts in PostgreSQL: postgresql://user[:password]@host[:port]/db (env MASKLOG_DATABASE); media stay in the data folder")


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder for the event log, accounts and media (env MASKLOG_DATA; default ./masklog-data)")
    _add_database_flags(parser)
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PORT", "8000") or 8000))
    parser.add_argument("--backend", choices=list(BACKENDS), help=f"model backend: {_backend_help()} (env MASKLOG_BACKEND; default: sam2 if a checkpoint is set, else {DEFAULT_BACKEND})")
    parser.add_argument("--sam2-checkpoint", help="path to a sam2.1_hiera_*.pt checkpoint (env MASKLOG_SAM2_CHECKPOINT)")
    parser.add_argument("--sam2-config", help="sam2 config name (env MASKLOG_SAM2_CONFIG)")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (env MASKLOG_DEVICE; default: CUDA when present)")
    _add_embedding_flag(parser)
    _add_compile_flags(parser)
    parser.add_argument("--no-models", action="store_true", help="answer no prompts and run no tracks here (requests wait in the log)")
    parser.add_argument("--workers", action="store_true", help="the model work is done by `masklog worker` processes on the same log (implies --no-models)")
    for name, kind, what in _USER_LIMITS:
        variable = f"MASKLOG_{name.upper()}"
        default = getattr(Settings, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=_positive(kind), default=env(name.upper()), help=f"{what} (env {variable}; default {default:g})")
    parser.add_argument("--public-origin", action="append", help="an origin clients reach this server under, e.g. https://labels.example.com (repeatable; env MASKLOG_PUBLIC_ORIGINS, comma-separated)")


def _add_embedding_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embedding-cache-mb", type=_positive(int), default=None,
        help=f"MiB of image embeddings kept for clicks, including frames embedded ahead of them (SAM 2; 1 to {MAX_EMBEDDING_CACHE_MB}; "
        f"env MASKLOG_EMBEDDING_CACHE_MB; default {DEFAULT_EMBEDDING_CACHE_MB}, 16 frames at 1024 px)",
    )  # fmt: skip


def _add_compile_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sam2-compile", action="store_true",
        help="run SAM 2 through torch.compile (sam2's vos_optimized build): faster per frame on a GPU, but each new input shape compiles first, minutes the first time (env MASKLOG_SAM2_COMPILE=1)",
    )  # fmt: skip
    parser.add_argument("--sam2-compile-cache", help="folder for the compiled code, kept between runs (env MASKLOG_SAM2_COMPILE_CACHE; default: DATA/compile-cache)")
    parser.add_argument(
        "--sam2-compile-mode", choices=COMPILE_MODES,
        help="torch.compile mode for --sam2-compile (env MASKLOG_SAM2_COMPILE_MODE; default max-autotune, sam2's; the others compile sooner)",
    )  # fmt: skip


def _model_settings(args: argparse.Namespace) -> ModelSettings:
    """The model settings of serve, demo and worker (flags, then MASKLOG_* variables)."""
    return model_settings_from(
        args.backend, args.sam2_checkpoint, args.sam2_config, args.device,
        compile=args.sam2_compile, compile_cache=args.sam2_compile_cache, compile_mode=args.sam2_compile_mode,
        embedding_cache_mb=args.embedding_cache_mb,
    )  # fmt: skip


def _backend_help() -> str:
    return "; ".join(f"{name}: {entry.summary}" for name, entry in BACKENDS.items())


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _at_most(limit: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be between 1 and {limit}, not {text}")
        return value

    parse.__name__ = "int"
    return parse


class _LimitSettings(TypedDict, total=False):
    """The `Settings` fields of the per-user limits."""

    max_running_tracks: int
    max_prompt_points: int
    commands_per_second: float
    command_burst: int
    projection_budget_mb: int
    snapshot_every: int


_LimitName = Literal["max_running_tracks", "max_prompt_points", "commands_per_second", "command_burst", "projection_budget_mb", "snapshot_every"]
# The per-user limits and the memory settings as flags (--max-running-tracks) and variables
# (MASKLOG_MAX_RUNNING_TRACKS).
_USER_LIMITS: tuple[tuple[_LimitName, type[int] | type[float], str], ...] = (
    ("max_running_tracks", int, "tracks one user may have running at once"),
    ("max_prompt_points", int, "clicks in one prompt"),
    ("commands_per_second", float, "commands one user may send a second"),
    ("command_burst", int, "commands one user may send at once above that rate"),
    ("projection_budget_mb", int, "MB of memory for the loaded media items' states; the least recently used ones unload past it"),
    ("snapshot_every", int, "a media item's state is snapshotted every this many of its events"),
)


def _limit_settings(args: argparse.Namespace) -> _LimitSettings:
    """The per-user limits given as flags or MASKLOG_* variables; the rest keep their defaults."""
    limits: _LimitSettings = {}
    for name, _, _ in _USER_LIMITS:
        value = getattr(args, name)
        if value is not None:
            limits[name] = value
    return limits


def _settings(args: argparse.Namespace) -> Settings:
    model = _model_settings(args)
    public = args.public_origin or [o.strip() for o in (env("PUBLIC_ORIGINS") or "").split(",") if o.strip()]
    storage, database = storage_from(args.storage, args.database)
    return Settings(
        data=_data_dir(args.data), storage=storage, database_url=database, host=args.host, port=args.port, model=model,
        run_models=not (args.no_models or args.workers), shared_log=True if args.workers else None, public_origins=tuple(public), **_limit_settings(args),
    )


def _serve(settings: Settings, demo: bool) -> None:
    import uvicorn

    from masklog.server.app import create_app, load_configured_backends, open_context
    from masklog.server.ws_deflate import socket_options

    # Models first: a configured checkpoint that does not load stops here, before serving.
    try:
        backends = load_configured_backends(settings)
    except Exception as error:  # Sam2LoadError, or sam2 itself refusing the config
        print(f"masklog: cannot start the {settings.model.backend} backend: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    if demo:
        from masklog.server.demo import PROJECT, ensure_demo

        async def prepare() -> dict[str, str]:
            async with open_context(settings, backends) as ctx:
                return await ensure_demo(ctx)

        tokens = asyncio.run(prepare())
        base = f"http://{settings.host}:{settings.port}"
        print(f"masklog demo project '{PROJECT}' in {settings.data}", flush=True)
        for name, token in tokens.items():
            print(f"  {name:7s} token {token}", flush=True)
        print(f"  try: curl -H 'Authorization: Bearer {tokens['alice']}' {base}/api/projects", flush=True)
        if (Path(__file__).resolve().parent.parent / "web" / "index.html").exists():
            # After '#': browsers never send the fragment, so the token reaches no server log.
            print(f"  page: {base}/#token={tokens['alice']}", flush=True)
    print(f"serving on http://{settings.host}:{settings.port} (backend: {settings.model.backend})", flush=True)
    uvicorn.run(
        create_app(settings, backends),
        host=settings.host,
        port=settings.port,
        log_level="info",
        **socket_options(settings.max_message_bytes),
    )


def _eval_vos(args: argparse.Namespace) -> int:
    from masklog.inference.evaluation import evaluate_vos
    from masklog.inference.registry import ModelOptions, load_tracker

    try:
        model = model_settings_from(DEFAULT_BACKEND, args.sam2_checkpoint, args.sam2_config, args.device)  # its model options only
        tracker = load_tracker(args.tracker, ModelOptions(checkpoint=model.sam2_checkpoint, config=model.sam2_config, device=model.device))
    except Exception as error:  # Sam2LoadError, or sam2 itself refusing the config
        print(f"masklog: cannot load the {args.tracker} tracker: {error}", file=sys.stderr)
        return 2

    def progress(sequence: str, index: int, total: int) -> None:
        # Frames 1..total-1 are scored (the first one is the given ground truth).
        scored = max(total - 1, 1)
        done = int(30 * index / scored)
        print(f"\r{sequence:>24s} [{'#' * done}{'.' * (30 - done)}] {index}/{scored}", end="" if index < scored else "\n", file=sys.stderr, flush=True)

    try:
        result = evaluate_vos(args.dir, tracker, progress=progress, sequences=args.sequences, max_frames=args.max_frames)
    except ValueError as error:
        print(f"masklog: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        for name, score in result["sequences"].items():
            print(f"{name:24s} J {score['J']:.3f}  F {score['F']:.3f}  J&F {score['JF']:.3f}  {score['frames']} frames  {1 / max(score['seconds_per_frame'], 1e-9):.1f} frames/s")
        mean = result["mean"]
        print(f"{'mean':24s} J {mean['J']:.3f}  F {mean['F']:.3f}  J&F {mean['JF']:.3f}")
    return 0


def _eval_clicks(args: argparse.Namespace) -> int:
    from masklog.inference.click_eval import NOC_THRESHOLDS, ClickScore, evaluate_clicks
    from masklog.inference.registry import ModelOptions, backend_named

    try:
        model = model_settings_from(DEFAULT_BACKEND, args.sam2_checkpoint, args.sam2_config, args.device)  # its model options only
        segmenter = backend_named(args.segmenter).load(ModelOptions(checkpoint=model.sam2_checkpoint, config=model.sam2_config, device=model.device)).segmenter
    except Exception as error:  # Sam2LoadError, or sam2 itself refusing the config
        print(f"masklog: cannot load the {args.segmenter} segmenter: {error}", file=sys.stderr)
        return 2

    def progress(sequence: str, done: int, total: int) -> None:
        bar = int(30 * done / max(total, 1))
        print(f"\r{sequence:>24s} [{'#' * bar}{'.' * (30 - bar)}] {done}/{total} objects", end="" if done < total else "\n", file=sys.stderr, flush=True)

    try:
        result = evaluate_clicks(args.dir, segmenter, progress=progress, sequences=args.sequences, every=args.every, max_clicks=args.max_clicks)
    except ValueError as error:
        print(f"masklog: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0

    def iou(value: float | None) -> str:
        return "   -  " if value is None else f"{value:6.3f}"

    def row(name: str, s: ClickScore) -> str:
        return (
            f"{name:24s} {s['instances']:7d} {s['NoC85']:7.2f} {s['NoC90']:7.2f} {s['NoF90']:6d} "
            f"{iou(s['IoU1'])} {iou(s['IoU3'])} {iou(s['IoU5'])} {s['seconds_per_click']:8.3f} {s['seconds_per_click_p50']:8.3f}"
        )

    low, high = (round(100 * t) for t in NOC_THRESHOLDS)
    print(f"{result['segmenter']}: one frame in {result['every']}, at most {result['max_clicks']} clicks")
    print(f"{'sequence':24s} {'objects':>7s} {f'NoC@{low}':>7s} {f'NoC@{high}':>7s} {f'NoF@{high}':>6s} {'IoU@1':>6s} {'IoU@3':>6s} {'IoU@5':>6s} {'s/click':>8s} {'p50 s':>8s}")
    for name, score in result["sequences"].items():
        print(row(name, score))
    print(row("overall", result["overall"]))
    return 0


def _progress(what: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        print(f"\r{what}: {done}/{total} frames", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return show


def _export(args: argparse.Namespace) -> int:
    from masklog.domain.coco import Selection
    from masklog.server.exchange.jobs import ExchangeError, export_offline

    selection = Selection(proposals=args.proposals, first=args.first, last=args.last, polygons=args.polygons)
    partial = args.out.with_name(args.out.name + ".partial")
    try:
        with open(partial, "wb") as out:
            asyncio.run(export_offline(
                _data_dir(args.data), args.project, args.media, args.format, out, selection, args.seq, args.images, _progress("exporting"),
                database_url=_database_url(args),
            ))  # fmt: skip
    except (ExchangeError, ValueError) as error:
        partial.unlink(missing_ok=True)
        print(f"masklog: {error}", file=sys.stderr)
        return 2
    partial.replace(args.out)  # a finished file, never half of one
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _snapshots(args: argparse.Namespace) -> int:
    from masklog.server.snapshot_job import write_snapshots
    from masklog.server.store import StoreError

    def show(media: str, events: int) -> None:
        print(f"\rsnapshots: {media} ({events} media events so far)", end="", file=sys.stderr, flush=True)

    try:
        report = asyncio.run(write_snapshots(_data_dir(args.data), args.every, show, database_url=_database_url(args)))
    except (ValueError, StoreError) as error:
        print(f"masklog: {error}", file=sys.stderr)
        return 2
    print(f"\nwrote {report.snapshots} snapshots of {report.media} media items ({report.events} events)", file=sys.stderr)
    return 0


def _import_log(args: argparse.Namespace) -> int:
    from masklog.server.exchange.jobs import ExchangeError, import_log

    def show(done: int) -> None:
        print(f"\rimporting: {done} events", end="", file=sys.stderr, flush=True)

    limit = args.max_bytes if args.max_bytes is not None else Settings.max_import_bytes
    try:
        with open(args.file, "rb") as file:
            # A line at a time, never longer than the limit: one huge line is not read whole.
            lines = iter(lambda: file.readline(limit + 1), b"")
            count = asyncio.run(import_log(_data_dir(args.data), lines, show, limit, database_url=_database_url(args)))
    except (ExchangeError, OSError, ValueError) as error:
        print(f"masklog: {error}", file=sys.stderr)
        return 2
    print(f"\nimported {count} events", file=sys.stderr)
    return 0


def _database_url(args: argparse.Namespace) -> str | None:
    """The PostgreSQL database an offline command's flags (or MASKLOG_DATABASE) name; None for
    the data folder's SQLite log. Raises ValueError for flags that cannot work together."""
    storage, database = storage_from(args.storage, args.database)
    return database if storage == "postgresql" else None


def _migrate(args: argparse.Namespace) -> int:
    from masklog.server.accounts import AccountError
    from masklog.server.operations import OperationError, migrate
    from masklog.server.store import StoreError

    try:
        storage, database = storage_from(args.storage, args.database)
        done = asyncio.run(migrate(Settings(data=_data_dir(args.data), storage=storage, database_url=database)))
    except (OperationError, StoreError, AccountError, ValueError) as error:
        print(f"masklog: {error}", file=sys.stderr)
        return 2
    for migration in done:
        print(migration)
    return 0


def _copy_log(args: argparse.Namespace) -> int:
    from masklog.server.accounts import AccountError
    from masklog.server.operations import OperationError, copy_log, storage_at
    from masklog.server.store import StoreError

    started = time.perf_counter()
    shown = False

    def show(done: int, total: int) -> None:
        nonlocal shown
        shown = done < total
        rate = done / max(time.perf_counter() - started, 1e-9)
        print(f"\rcopying: {done}/{total} events ({rate:,.0f}/s)", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        report = asyncio.run(copy_log(storage_at(args.source), storage_at(args.to), show, args.batch_size))
    except (OperationError, StoreError, AccountError, ValueError) as error:
        print(f"{chr(10) if shown else ''}masklog: {error}", file=sys.stderr)
        return 2
    print(
        f"copied {report.events} events, {report.users} users, {report.tokens} tokens and {report.members} memberships "
        f"in {report.seconds:.1f} s ({report.events / max(report.seconds, 1e-9):,.0f} events/s); snapshots are not copied"
    )
    return 0


def _worker(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from masklog.server.app import load_configured_backends
    from masklog.server.worker import WorkerOptions
    from masklog.server.worker import main as run

    try:
        model = _model_settings(args)
        storage, database = storage_from(args.storage, args.database)
    except ValueError as error:
        parser.error(str(error))
    settings = Settings(data=_data_dir(args.data), storage=storage, database_url=database, model=model, run_models=False)
    try:
        backends = load_configured_backends(settings)
    except Exception as error:  # Sam2LoadError, or sam2 itself refusing the config
        print(f"masklog: cannot start the {model.backend} backend: {error}", file=sys.stderr)
        return 2
    run(settings, backends, WorkerOptions(lease_s=args.lease, max_tracks=args.max_tracks))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="masklog", description="Event-sourced collaborative label server")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    _add_server_flags(serve)
    serve.add_argument("--demo", action="store_true", help="create the demo project first if it is missing")

    demo = commands.add_parser("demo", help="run the server with a demo project (made on the spot, no download)")
    _add_server_flags(demo)

    user = commands.add_parser("user", help="manage users")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="create a user (or give them a new token) and print the token")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "annotator", "viewer"], default="annotator", help="account role: admins create projects and administer all of them")
    add.add_argument("--data")
    _add_database_flags(add)
    default_days = float(env("TOKEN_DAYS") or Settings.token_lifetime_days)
    add.add_argument(
        "--expires", type=float, default=default_days, metavar="DAYS",
        help=f"the new token stops working after DAYS days; 0: until revoked (env MASKLOG_TOKEN_DAYS; default {default_days:g})",
    )
    revoke = user_commands.add_parser("revoke", help="revoke a user's tokens (all, or one); works while the server runs")
    revoke.add_argument("name")
    revoke.add_argument("--token", help="only this token (the token itself or its id, from 'masklog user tokens')")
    revoke.add_argument("--data")
    _add_database_flags(revoke)
    tokens = user_commands.add_parser("tokens", help="list a user's tokens: id, created, expires, revoked")
    tokens.add_argument("name")
    tokens.add_argument("--data")
    _add_database_flags(tokens)

    evaluate = commands.add_parser("eval-vos", help="semi-supervised tracking evaluation (DAVIS J and F) on DAVIS-format folders")
    evaluate.add_argument("dir", type=Path, help="folder of sequences: <seq>/JPEGImages and <seq>/Annotations")
    evaluate.add_argument("--tracker", choices=["simple", *tracker_names()], default="simple", help="a registered tracker (sam2 needs a checkpoint); simple: the classical one")
    evaluate.add_argument("--json", action="store_true", help="print the full result as JSON on stdout")
    evaluate.add_argument("--sequences", nargs="*", help="only these sequences")
    evaluate.add_argument("--max-frames", type=int, help="only the first N frames of each sequence")
    evaluate.add_argument("--sam2-checkpoint", help="checkpoint for --tracker sam2 (env MASKLOG_SAM2_CHECKPOINT)")
    evaluate.add_argument("--sam2-config", help="sam2 config name (env MASKLOG_SAM2_CONFIG)")
    evaluate.add_argument("--device", help="cuda or cpu (default: CUDA when present)")

    from masklog.inference.click_eval import DEFAULT_EVERY, DEFAULT_MAX_CLICKS, MAX_CLICKS_LIMIT

    clicks = commands.add_parser(
        "eval-clicks",
        help="interactive segmentation evaluation (NoC@85/90, IoU after 1, 3, 5 simulated clicks) on DAVIS-format folders",
        description=(
            "The standard click protocol (inference/click_eval.py): the first click at the object's most interior pixel, each "
            "next one at the most interior pixel of the largest error region (include where missed, exclude where false), up to "
            "--max-clicks clicks, on every object of every --every-th annotated frame. NoC@85/90: clicks to reach IoU 0.85/0.90 "
            "(--max-clicks when never; NoF: how many never reach it); figures are means over objects."
        ),
    )
    clicks.add_argument("dir", type=Path, help="folder of sequences: <seq>/JPEGImages and <seq>/Annotations")
    clicks.add_argument("--segmenter", choices=list(BACKENDS), default=DEFAULT_BACKEND, help=f"the backend whose segmenter answers the clicks (sam2 needs a checkpoint; default {DEFAULT_BACKEND})")
    clicks.add_argument("--every", type=_positive(int), default=DEFAULT_EVERY, help=f"every Nth frame of a sequence (0, N, 2N...; default {DEFAULT_EVERY})")
    clicks.add_argument("--max-clicks", type=_at_most(MAX_CLICKS_LIMIT), default=DEFAULT_MAX_CLICKS, help=f"clicks per object, at most {MAX_CLICKS_LIMIT} (default {DEFAULT_MAX_CLICKS})")
    clicks.add_argument("--json", action="store_true", help="print the full result as JSON on stdout")
    clicks.add_argument("--sequences", nargs="*", help="only these sequences")
    clicks.add_argument("--sam2-checkpoint", help="checkpoint for --segmenter sam2 (env MASKLOG_SAM2_CHECKPOINT)")
    clicks.add_argument("--sam2-config", help="sam2 config name (env MASKLOG_SAM2_CONFIG)")
    clicks.add_argument("--device", help="cuda or cpu (default: CUDA when present)")

    from masklog.server.exchange.formats import DEFAULT_FORMAT, FORMATS, describe_formats

    export = commands.add_parser("export", help=f"write labels or the event log to a file ({', '.join(FORMATS)})")
    export.add_argument("--data", help="the data folder: its SQLite log, and the media files frames are read from")
    _add_database_flags(export)
    export.add_argument("--project", help="the project (for events: all of the log when left out)")
    export.add_argument("--media", nargs="*", default=[], help="only these media items")
    export.add_argument("--format", choices=list(FORMATS), default=DEFAULT_FORMAT, help=f"{describe_formats()} (default {DEFAULT_FORMAT})")
    export.add_argument("--out", type=Path, required=True, help="file to write (yolo: a .zip)")
    export.add_argument("--proposals", action="store_true", help="also unreviewed tracked results")
    export.add_argument("--first", type=int, help="first frame")
    export.add_argument("--last", type=int, help="last frame")
    export.add_argument("--seq", type=int, help="as of this log position")
    export.add_argument("--polygons", action="store_true", help="coco: masks as polygons, not RLE")
    export.add_argument("--images", action="store_true", help="yolo: include the frames as JPEG")

    import_log = commands.add_parser("import-log", help="load an exported event log into an empty data folder")
    import_log.add_argument("file", type=Path)
    import_log.add_argument("--data")
    _add_database_flags(import_log)
    import_log.add_argument("--max-bytes", type=int, help=f"refuse a log larger than this (default {Settings.max_import_bytes}, Settings.max_import_bytes)")

    snapshots = commands.add_parser("snapshots", help="write the media items' snapshots a server would have written (for a log it never served that way)")
    snapshots.add_argument("--data")
    _add_database_flags(snapshots)
    snapshots.add_argument("--every", type=int, default=Settings.snapshot_every, help=f"a snapshot every this many events of a media item (default {Settings.snapshot_every})")

    worker = commands.add_parser(
        "worker",
        help="do the model work (clicks, tracks) in a process of its own, for servers run with --no-models",
        description=(
            "An inference worker: follows the same log as the servers (the data folder's SQLite file, or --database), "
            "claims tracks and media items' clicks with leases, and writes the results to the log. Start as many as "
            "there are GPUs (--device cuda:N); the servers then run with --no-models. Media files are read from --data's "
            "media folder, which must be the servers' (a shared folder on a cluster)."
        ),
    )
    worker.add_argument("--data", help="the data folder: its SQLite log (unless --database), and the media files (env MASKLOG_DATA)")
    _add_database_flags(worker)
    worker.add_argument("--backend", choices=list(BACKENDS), help=f"model backend: {_backend_help()} (env MASKLOG_BACKEND)")
    worker.add_argument("--sam2-checkpoint", help="path to a sam2.1_hiera_*.pt checkpoint (env MASKLOG_SAM2_CHECKPOINT)")
    worker.add_argument("--sam2-config", help="sam2 config name (env MASKLOG_SAM2_CONFIG)")
    worker.add_argument("--device", help="cuda, cuda:N or cpu (env MASKLOG_DEVICE; default: CUDA when present)")
    _add_embedding_flag(worker)
    _add_compile_flags(worker)
    worker.add_argument(
        "--max-tracks", type=_positive(int), default=int(env("WORKER_MAX_TRACKS", "4") or 4),
        help="tracks this worker works at once; the others wait for a free worker (env MASKLOG_WORKER_MAX_TRACKS; default 4)",
    )  # fmt: skip
    worker.add_argument(
        "--lease", type=_positive(float), default=float(env("WORKER_LEASE_S", "10") or 10),
        help="seconds a dead worker's tracks wait before another takes them over (env MASKLOG_WORKER_LEASE_S; default 10)",
    )  # fmt: skip

    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the schema of the event log and the accounts, and say what it did (serve does the same on start)",
    )
    migrate.add_argument("--data", help="the data folder of a SQLite log (env MASKLOG_DATA; default ./masklog-data)")
    _add_database_flags(migrate)

    copy = commands.add_parser(
        "copy-log",
        help="copy the event log and the accounts into an empty storage (SQLite <-> PostgreSQL)",
        description=(
            "Copy the event log (every event as it was: same positions, ids, times and bodies) and the accounts (users, "
            "tokens as stored, memberships) from one storage into another whose log and accounts are empty. "
            "SRC and DST are each a data folder or a postgresql:// URL. Stop the servers of the source first: the copy is "
            "of the log as of its head when the copy starts. Snapshots are not copied (a cache: servers rebuild them; "
            "'masklog snapshots' writes them at once). Media files are not copied either: they stay in the data folder."
        ),
    )
    copy.add_argument("--from", dest="source", required=True, metavar="SRC", help="a data folder or a postgresql:// URL")
    copy.add_argument("--to", required=True, metavar="DST", help="a data folder or a postgresql:// URL; its log and accounts must be empty")
    copy.add_argument("--batch-size", type=_positive(int), default=10_000, help="events per transaction (default 10000)")

    args = parser.parse_args(argv)
    if args.command == "worker":
        return _worker(args, parser)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "copy-log":
        return _copy_log(args)
    if args.command == "snapshots":
        return _snapshots(args)
    if args.command == "export":
        return _export(args)
    if args.command == "import-log":
        return _import_log(args)
    if args.command == "eval-vos":
        return _eval_vos(args)
    if args.command == "eval-clicks":
        return _eval_clicks(args)
    if args.command in ("serve", "demo"):
        try:
            settings = _settings(args)
        except ValueError as error:
            parser.error(str(error))
        _serve(settings, demo=args.command == "demo" or args.demo)
        return 0
    if args.command == "user":
        from masklog.server.accounts import AccountError, Role
        from masklog.server.storage import open_accounts

        def when(stamp: float | None) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"

        try:
            storage, database = storage_from(args.storage, args.database)
        except ValueError as error:
            parser.error(str(error))

        async def manage_user() -> str:
            data = _data_dir(args.data)
            data.mkdir(parents=True, exist_ok=True)
            accounts = await open_accounts(Settings(data=data, storage=storage, database_url=database))
            try:
                if args.user_command == "revoke":
                    revoked = await accounts.revoke(args.name, args.token)
                    return f"revoked {len(revoked)} token(s) of {args.name}" + (f": {', '.join(revoked)}" if revoked else "")
                if args.user_command == "tokens":
                    rows = [f"{t.id}  created {when(t.created)}  expires {when(t.expires)}  revoked {when(t.revoked)}" for t in await accounts.tokens(args.name)]
                    return "\n".join(rows) or f"{args.name} has no tokens"
                return await accounts.add_user(args.name, Role(args.role), token_lifetime_s(args.expires))
            finally:
                await accounts.close()

        try:
            print(asyncio.run(manage_user()))
        except AccountError as error:
            print(f"masklog: {error}", file=sys.stderr)
            return 2
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Server settings: flags first, then MASKLOG_* environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from masklog.inference.registry import DEFAULT_BACKEND, DEFAULT_EMBEDDING_CACHE_MB, MAX_EMBEDDING_CACHE_MB, backend_named


@dataclass(frozen=True)
class ModelSettings:
    """Which backend answers clicks and 'advanced' tracking (E4)."""

    backend: str = DEFAULT_BACKEND  # a name in `inference.registry.BACKENDS`
    sam2_checkpoint: Path | None = None
    sam2_config: str = "sam2.1_hiera_t"  # a config packaged with sam2 (short name or path)
    device: str | None = None  # None: CUDA when present, else CPU
    # SAM 2 through torch.compile (sam2's vos_optimized build): faster per frame on a GPU once
    # compiled, slow to start (the first call of each shape compiles). Off by default.
    sam2_compile: bool = False
    # Where inductor keeps compiled code so a restarted server does not compile again;
    # None: the data folder's compile-cache/.
    sam2_compile_cache: Path | None = None
    # torch.compile's mode: sam2's "max-autotune" (slowest to compile, fastest to run);
    # "max-autotune-no-cudagraphs" or "default" compile sooner.
    sam2_compile_mode: str = "max-autotune"
    # MiB of image embeddings the segmenter keeps (SAM: clicked frames and frames embedded ahead
    # of clicks), 1..MAX_EMBEDDING_CACHE_MB.
    embedding_cache_mb: int = DEFAULT_EMBEDDING_CACHE_MB

    def __post_init__(self) -> None:
        if not 1 <= self.embedding_cache_mb <= MAX_EMBEDDING_CACHE_MB:
            raise ValueError(f"the embedding cache must be 1 to {MAX_EMBEDDING_CACHE_MB} MiB, got {self.embedding_cache_mb}")


@dataclass(frozen=True)
class Settings:
    data: Path
    # Where the log and the accounts are kept: a name in server.storage.STORAGE_BACKENDS.
    storage: str = "sqlite"
    # The "postgresql" storage's database, a postgresql:// URL (--database, MASKLOG_DATABASE).
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    model: ModelSettings = field(default_factory=ModelSettings)
    # Limits on what a client may send.
    max_upload_bytes: int = 2 * 1024**3
    max_message_bytes: int = 8 * 1024**2
    max_request_bytes: int = 16 * 1024**2
    # A COCO file imported through the API (body or multipart), and an event log `import-log` loads.
    max_import_bytes: int = 256 * 1024**2
    # Events queued for one socket before it is dropped and must resume (a slow reader never
    # slows the others).
    client_queue: int = 1000
    # Decoded frames kept per media item, and media items with open decoders.
    frame_cache: int = 32
    open_media: int = 8
    # Bytes of decoded frames cached by the whole process (all media items and tracks together,
    # least recently used first); a frame larger than this is served but not cached.
    frame_cache_bytes: int = 512 * 1024**2
    # Pixels (width x height) an uploaded image, video frame or DICOM slice may have: checked
    # from the file's header before decoding, so a small file cannot decode to gigabytes.
    max_image_pixels: int = 40_000_000
    # Browser origins allowed on the socket besides the server's own.
    allowed_origins: tuple[str, ...] = ()
    # Per-user limits on queued work (server.limits): tracks running at once, clicks in one
    # prompt, and commands a second (a token bucket: `command_burst` at once, then the rate).
    max_running_tracks: int = 8
    max_prompt_points: int = 64
    commands_per_second: float = 50.0
    command_burst: int = 200
    # The origins (scheme://host[:port]) under which clients reach this server, e.g. behind a
    # proxy: a socket's Host must name one of them (or, always, a loopback name or the address
    # the connection arrived on, with the port it arrived on), and a browser's Origin must be one
    # of them, that same host over plain http, or in `allowed_origins`.
    public_origins: tuple[str, ...] = ()
    # A socket whose client does not take a message within this time is closed (4008), so a
    # client that stops reading stops holding memory.
    send_timeout_s: float = 30.0
    # How often open sockets are checked against the stored accounts (tokens revoked or expired
    # by another process, account roles changed).
    access_check_s: float = 1.0
    # Lifetime of a new token (`masklog user add --expires DAYS`); 0: until revoked.
    token_lifetime_days: float = 30.0
    # Memory for the media items' states (server.projections): the states of media items in use
    # (an open socket, a running track, a recent read) are kept loaded; past this estimate the
    # least recently used others are unloaded (snapshotted first) and load again when next used.
    # 1 GB holds a working set of about half a million events' worth of media items.
    projection_budget_mb: int = 1024
    # A media item's state is snapshotted every this many of its events (and when it unloads),
    # so loading or replaying it folds at most about this many events after its snapshot.
    snapshot_every: int = 1000
    # Whether this process runs the inference actor (answers prompts, works off tracks). Off,
    # requests wait in the log for a process that does.
    run_models: bool = True
    # Whether other processes write the same log (several servers on one PostgreSQL database):
    # then the ledger follows the log and decides with expected versions (server.shared_ledger).
    # None: yes for the postgresql storage, no for SQLite (one server process per file, unless
    # `serve --workers`: workers write the models' results to the same file).
    shared_log: bool | None = None
    # Sharing model work between processes (server.workers; `masklog worker`): how long a dead
    # actor's claims last, and how many tracks one actor works at once.
    worker_lease_s: float = 10.0
    worker_max_tracks: int = 4

    @property
    def follows_log(self) -> bool:
        """Whether this process's ledger is one of several writers of its log: on PostgreSQL, or
        on SQLite with `masklog worker` processes (`serve --workers`)."""
        if self.shared_log is not None:
            return self.shared_log
        return self.storage == "postgresql"

    @property
    def database(self) -> Path:
        """The SQLite storage's event log."""
        return self.data / "events.sqlite3"

    @property
    def log_location(self) -> str:
        """Where the log is, for messages: the SQLite file, or the database URL without its
        password."""
        return redact_url(self.database_url) if self.database_url else str(self.database)

    @property
    def accounts_database(self) -> Path:
        """The SQLite storage's accounts."""
        return self.data / "accounts.sqlite3"

    @property
    def work_database(self) -> Path:
        """The SQLite storage's work claims and workers registry (`server.sqlite_claims`)."""
        return self.data / "work.sqlite3"

    @property
    def media_dir(self) -> Path:
        return self.data / "media"


def redact_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return "<a database URL>"


def storage_from(storage: str | None, database: str | None) -> tuple[str, str | None]:
    """The storage and database URL that flags (or MASKLOG_STORAGE / MASKLOG_DATABASE) name: a
    postgresql:// database means the postgresql storage unless another is named; the
    postgresql storage needs one. Raises ValueError for a combination that cannot work."""
    storage = storage or env("STORAGE")
    database = database or env("DATABASE") or None
    if database is not None and not database.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"--database must be a postgresql:// URL, not {database.split('://')[0]!r}...")
    if storage is None:
        storage = "postgresql" if database else Settings.storage
    if storage == "postgresql" and database is None:
        raise ValueError("--storage postgresql needs --database postgresql://user@host/db (or MASKLOG_DATABASE)")
    if storage != "postgresql" and database is not None:
        raise ValueError(f"--database is a PostgreSQL URL, but the storage is {storage}")
    return storage, database


def token_lifetime_s(days: float) -> float | None:
    return days * 24 * 3600.0 if days > 0 else None


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"MASKLOG_{name}", default)


def env_flag(name: str) -> bool:
    """A MASKLOG_* variable as a yes/no: 1, true, yes or on (any case) is yes; unset or empty is
    no; anything else is a ValueError that names the variable."""
    value = (env(name) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"MASKLOG_{name} must be 1/true/yes/on or 0/false/no/off, not {value!r}")


def model_settings_from(
    backend: str | None,
    checkpoint: str | None,
    config: str | None,
    device: str | None,
    *,
    compile: bool = False,
    compile_cache: str | None = None,
    compile_mode: str | None = None,
    embedding_cache_mb: int | None = None,
) -> ModelSettings:
    backend = backend or env("BACKEND")
    if embedding_cache_mb is None:
        text = env("EMBEDDING_CACHE_MB")
        try:
            embedding_cache_mb = int(text) if text else DEFAULT_EMBEDDING_CACHE_MB
        except ValueError:
            raise ValueError(f"MASKLOG_EMBEDDING_CACHE_MB must be a whole number of MiB, not {text!r}") from None
    checkpoint = checkpoint or env("SAM2_CHECKPOINT")
    if backend is None:
        backend = "sam2" if checkpoint else DEFAULT_BACKEND
    backend_named(backend)  # raises UnknownBackend (a ValueError) naming the registered ones
    return ModelSettings(
        backend=backend,
        sam2_checkpoint=Path(checkpoint) if checkpoint else None,
        sam2_config=config or env("SAM2_CONFIG") or ModelSettings.sam2_config,
        device=device or env("DEVICE"),
        embedding_cache_mb=embedding_cache_mb,
        sam2_compile=compile or env_flag("SAM2_COMPILE"),
        sam2_compile_cache=Path(cache) if (cache := compile_cache or env("SAM2_COMPILE_CACHE")) else None,
        sam2_compile_mode=compile_mode_from(compile_mode),
    )


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode_from(flag: str | None) -> str:
    mode = flag or env("SAM2_COMPILE_MODE") or ModelSettings.sam2_compile_mode
    if mode not in COMPILE_MODES:
        raise ValueError(f"MASKLOG_SAM2_COMPILE_MODE must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")
    return mode

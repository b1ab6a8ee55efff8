"""What one server process holds: the log, the ledger, the accounts, the media, the models and
the open sockets. Who may do what is in `server/authorization.py`."""

from __future__ import annotations

from dataclasses import dataclass, field

from masklog.inference.actor import InferenceActor
from masklog.inference.registry import Backends
from masklog.server.accounts import Accounts
from masklog.server.claims import WorkClaims
from masklog.server.hub import Hub
from masklog.server.ledger import Ledger
from masklog.server.limits import Limits
from masklog.server.media import MediaLibrary
from masklog.server.presence import PresenceBoard
from masklog.server.sessions import Sessions
from masklog.server.settings import Settings
from masklog.server.store import EventStore
from masklog.server.workers import WorkerDirectory


@dataclass
class Context:
    settings: Settings
    store: EventStore
    hub: Hub
    ledger: Ledger
    accounts: Accounts
    presence: PresenceBoard
    library: MediaLibrary
    backends: Backends
    actor: InferenceActor
    limits: Limits
    sessions: Sessions = field(default_factory=Sessions)  # open sockets, ended when access is lost
    # Several processes on the log: the work claims and the live workers (server.workers).
    claims: WorkClaims | None = None
    workers: WorkerDirectory = field(default_factory=lambda: WorkerDirectory(None))


"""What one server process holds: the log, the ledger, the accounts, the media, the models and
the open sockets. Who may do what is in `server/authorization.py`."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.actor import InferenceActor
from inference.registry import Backends
from server.accounts import Accounts
from server.hub import Hub
from server.ledger import Ledger
from server.limits import Limits
from server.media import MediaLibrary
from server.presence import PresenceBoard
from server.sessions import Sessions
from server.settings import Settings
from server.store import EventStore


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


import pytest

from tests.server.live import LiveServer, seeded_server
from tests.server.postgres_server import postgres_server  # noqa: F401  (the session's PostgreSQL server, for the tests that need one)


@pytest.fixture
def live(tmp_path) -> LiveServer:
    """A seeded server (see `seed`) on 127.0.0.1 with its own SQLite file and media folder."""
    with seeded_server(tmp_path) as server:
        yield server

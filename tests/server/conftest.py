import pytest

from tests.server.live import LiveServer, seed, start_server


@pytest.fixture
def live(tmp_path) -> LiveServer:
    """A seeded server (see `seed`) on 127.0.0.1 with its own SQLite file and media folder."""
    server = start_server(tmp_path / "data")
    try:
        seed(server)
        yield server
    finally:
        server.stop()

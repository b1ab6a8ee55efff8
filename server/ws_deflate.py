"""The socket's compression (permessage-deflate) at a level that costs little CPU.

A socket's first message on a long media item is a snapshot of a few MB of JSON (RLE masks). At
zlib's default level uvicorn spends about 45 ms compressing 3 MB (to 15 %) and the client about
20 ms inflating it: a third of a cold open. Level 1 compresses the same JSON to 17 % in a third
of the time. Compression stays on (a remote annotator's link is the slow part); only its level
changes. uvicorn builds its deflate settings inside its protocol's constructor, so this protocol
rebuilds the connection with the same settings but the level.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

LEVEL = 1  # zlib's compression level (default 6): 3 MB of snapshot JSON in ~14 ms instead of ~49


class CheapDeflateProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol, compressing at `LEVEL`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:
            # uvicorn's own window and memory settings, with a level of our choosing.
            deflate = ServerPerMessageDeflateFactory(server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5, "level": LEVEL})
            self.conn = ServerProtocol(extensions=[deflate], max_size=self.config.ws_max_size, logger=logging.getLogger("uvicorn.error"))


def socket_options(max_message_bytes: int) -> dict[str, Any]:
    """uvicorn's socket settings for a masklog server (its CLI and the in-process test servers)."""
    # A message may grow in transit (JSON escapes); twice the limit lets our own check answer.
    return {"ws": CheapDeflateProtocol, "ws_max_size": 2 * max_message_bytes}

"""One module per export format, each defining `WRITER`; `server/exchange/formats.py` names them."""

"""The old home of the desktop bridge, now the top-level package ``bridge`` (a client of
the server, not part of it). Only ``python -m server.bridge`` is kept, as an alias."""

"""``python -m server.bridge``: the old name of ``python -m bridge``, kept so that what
people scripted keeps working. Same arguments, same exit statuses."""

from __future__ import annotations

import sys

from bridge.__main__ import main

if __name__ == "__main__":
    sys.exit(main())

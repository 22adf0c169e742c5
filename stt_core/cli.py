"""The ``stt-core`` command (``python -m stt_core.cli`` too); its commands are in ``_cli``."""

import sys

from ._cli.commands import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

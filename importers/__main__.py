"""``python -m importers``: see ``importers/cli.py``."""

import sys

from .cli import main

sys.exit(main())

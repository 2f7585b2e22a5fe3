"""``python -m aero_media`` runs the ``aero-media`` CLI."""

import sys

from .cli import main

sys.exit(main())

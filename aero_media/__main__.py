"""``python -m aero_media`` runs the ``aero-media`` CLI."""

import sys

from .entry import main  # first: Ctrl-C is one line and exit 130 from here on

sys.exit(main())

"""doit's entry point: wiring only. Every task comes from aero_media's task graph.

In this checkout pyproject.toml ([tool.doit] loader) hands doit the same task loader
`aero-media build` uses, which sees the task names asked for. Elsewhere, doit's own
loader reads this file: its task creators apply the strict policy (a broken spec
stops every run), since that loader hands them no task names.
"""

from aero_media import entry  # noqa: F401  # first: from here on Ctrl-C is one line and exit 130
from aero_media.taskgraph import interrupt

# Before the task modules load (a tenth of a second): a Ctrl-C then is one line too, not a traceback.
interrupt.install()

from aero_media.taskgraph.main import dodo_namespace  # noqa: E402

globals().update(dodo_namespace())

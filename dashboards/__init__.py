"""Plotly dashboards: pure ``DataFrame -> Figure`` functions and the page that assembles them.

Nothing here imports the replay engine: figures are built from query results only.
"""

from __future__ import annotations

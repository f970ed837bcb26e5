"""streamsim: replay interaction logs through sequential recommenders, in timestamp order.

The engine lives in this package; models in the top-level ``models`` package, dashboards in
``dashboards`` and the bundled scenario files in ``scenarios``.
"""

from __future__ import annotations

__version__ = "0.1.0"

"""``python -m streamsim ...``: the same command line as the ``streamsim`` script (for launchers
such as ``torchrun -m`` that start a module, not a script)."""

from __future__ import annotations

from streamsim.cli import main

main()

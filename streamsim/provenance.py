"""Where a result came from: package versions and the source checkout's commit.

Every checkpoint manifest and run manifest records `versions()`; run manifests also record
`git_state()`, so a number in a table can be traced to the code that produced it.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

from streamsim import __version__


def versions() -> dict[str, str]:
    """Versions of streamsim and the packages that determine its numbers, and torch's thread
    count (floating-point reductions, and so trained weights, can differ between thread counts;
    a checkpoint is reused whatever the count, so its manifest says which one trained it)."""
    import duckdb
    import numpy as np
    import river
    import torch

    return {
        "streamsim": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "duckdb": duckdb.__version__,
        "river": river.__version__,
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
    }


def git_state() -> dict[str, Any]:
    """The source checkout's commit and whether it has uncommitted changes.

    Both are None when streamsim does not run from a git checkout of itself (an installed wheel
    inside some other repository must not report that repository's commit).
    """
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return {"git_revision": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_revision": git("rev-parse", "HEAD"), "git_dirty": bool(status)}

"""Where the bundled data files are, in an editable install and in an installed wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def bundled_scenario_dir() -> Path:
    """The directory of the shipped ``scenarios/*.toml`` files.

    ``scenarios`` is a data-only namespace package, so `importlib.resources.files` cannot be used
    on it in an editable install (its search path mixes a directory with a path hook); the first
    real directory on its search path is the one.
    """
    spec = importlib.util.find_spec("scenarios")
    if spec is not None and spec.submodule_search_locations is not None:
        for location in spec.submodule_search_locations:
            path = Path(location)
            if path.is_dir() and any(path.glob("*.toml")):
                return path
    msg = "the bundled `scenarios` directory was not found; is streamsim installed?"
    raise FileNotFoundError(msg)

"""Sequential recommenders behind one interface (`models.base.Recommender`) and one registry.

Every model module is imported here so that the registry is complete after ``import models``.
"""

from __future__ import annotations

from models.base import Recommender, SeqBatch
from models.registry import ModelEntry, create, get, list_models, make_config, register

__all__ = [
    "ModelEntry",
    "Recommender",
    "SeqBatch",
    "create",
    "get",
    "list_models",
    "make_config",
    "register",
]

# model modules (each registers itself); keep one import per line
import models.bert4rec  # noqa: F401, E402
import models.caser  # noqa: F401, E402
import models.gru4rec  # noqa: F401, E402
import models.mamba4rec  # noqa: F401, E402
import models.popularity  # noqa: F401, E402
import models.sasrec  # noqa: F401, E402
import models.t2arec  # noqa: F401, E402
import models.tim4rec  # noqa: F401, E402
import models.transition  # noqa: F401, E402
import models.ttt4rec  # noqa: F401, E402
import models.ttt_linear_rec  # noqa: F401, E402

# First, before anything below can import transformers: decide whether the Hugging Face hub
# is reachable and set HF_HUB_OFFLINE=1 if not (it is read only at import time).
from ._offline import ensure_offline_if_unreachable

ensure_offline_if_unreachable()

from .errors import ModelError, SpecError, UserError  # noqa: E402
from .result import Result  # noqa: E402
from .service import compute  # noqa: E402
from .spec import AnalysisSpec  # noqa: E402

__all__ = ["AnalysisSpec", "compute", "Result", "UserError", "SpecError", "ModelError"]

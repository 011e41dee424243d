"""Plain JSON values from what results carry (numpy scalars, tuples, non-finite floats)."""
import math


def jsonable(value, nan_as_null: bool = True):
    """A copy of `value` that `json.dumps` accepts: numpy scalars unwrapped, tuples as lists,
    dict keys as text, and NaN / infinities as null unless `nan_as_null` is False (the store
    keeps them, since Python's json reads them back)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, nan_as_null) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, nan_as_null) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if nan_as_null and isinstance(value, float) and not math.isfinite(value):
        return None
    return value

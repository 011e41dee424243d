"""Index checks against the model's shape, written once: a layer, head or neuron a spec
names must exist in the model, else a SpecError that names the field, the bad index and
the valid range."""
from __future__ import annotations

from analyses.core.errors import SpecError


def check_index(field: str, index: int, count: int, has: str, label: str | None = None) -> int:
    """`index` when it is one of `count` things (0 to count - 1), else a SpecError naming
    `field`; `has` says what the model has ("the model has 2 layers"), `label` how the user
    wrote the index (L5H0), when not as the bare number."""
    if not 0 <= index < count:
        raise SpecError(field, f"{label or index} is out of range: {has} (0 to {count - 1})")
    return index


def check_layer(bridge, layer: int, field: str = "layer", label: str | None = None) -> int:
    """`layer` when the model has it, else a SpecError naming `field`."""
    n_layers = int(bridge.cfg.n_layers)
    return check_index(field, layer, n_layers, f"the model has {n_layers} layers", label)

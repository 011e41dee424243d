"""Which rows `make bench` runs and which `make bench-full` runs. No side effects on import,
unlike `bench.common`, so the tests can check the split."""
from __future__ import annotations

# Rows `make bench-full` runs and `make bench` leaves out: how time and memory grow with
# sequence length (64-1024 tokens) and model size, and the 64-token GPT-2-shape sweeps, whose
# TransformerLens references alone take minutes.
FULL_ONLY = ("scaling", "model size", "GPT-2-small shape, 64 tokens")


def selected(name: str, only: str, full: bool) -> bool:
    """Whether a run runs the row `name`: BENCH_ONLY picks by substring from every row;
    otherwise `make bench` runs the rows outside FULL_ONLY and `make bench-full` those in it."""
    if only:
        return only in name
    return full == any(part in name for part in FULL_ONLY)

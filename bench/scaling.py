"""Memory and scaling: each prompt analysis at 64, 256 and 1024 tokens on the
GPT-2-small-shaped model — time, peak resident memory, and the exponents of both against
sequence length (a least-squares line through log-log points). Each (analysis, length) runs
in a process of its own (`bench.model_size.fresh_processes`): a peak measured after other rows
would depend on what they left in the allocator."""
from __future__ import annotations

from bench.common import row
from bench.fitting import fit
from bench.model_size import WHAT, fresh_processes

LENGTHS = (64, 256, 1024)
# Patching is limited to the last layer's heads (12 cells): a whole sweep at 1024 tokens
# would take most of an hour here; its cost per cell is what grows with length.
KINDS = ("logit_lens", "activation_patching", "attribution_patching", "dla")


def exponent(lengths, values) -> float:
    """The slope of log(value) against log(length)."""
    return fit(lengths, values)[0]


def scaling_rows(model_dir: str) -> list[dict]:
    jobs = [(kind, length) for kind in KINDS for length in LENGTHS]
    measured = dict(zip(jobs, fresh_processes(model_dir, jobs)))
    rows = []
    for kind in KINDS:
        points = [measured[(kind, length)] for length in LENGTHS]
        times = [p["seconds"] for p in points]
        peaks = [p["peak_mib"] for p in points]
        rows.append(row(
            f"scaling: {kind}, GPT-2-small shape", times[-1], times[0],
            exponent(LENGTHS, times), None, "report", None,
            f"{WHAT[kind]}; ratio = time exponent; " + ", ".join(
                f"{n} tokens {t:.2f} s +{m:.0f} MiB" for n, t, m in zip(LENGTHS, times, peaks))
            + f"; memory exponent {exponent(LENGTHS, peaks):.2f}"))
    return rows

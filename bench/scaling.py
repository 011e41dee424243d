"""Memory and scaling: each prompt analysis at 64, 256 and 1024 tokens on the
GPT-2-small-shaped model — time, peak resident memory, and the exponents of both against
sequence length (a least-squares line through log-log points)."""
from __future__ import annotations

import numpy as np

from analyses import AnalysisSpec
from analyses.kinds import activation_patching, attribution_patching, dla, logit_lens
from bench.common import pair_of_length, peak_memory, row, timed

LENGTHS = (64, 256, 1024)


def _specs(ref: str, pair: dict) -> dict:
    """analysis -> (spec, run). Patching is limited to the last layer's heads (12 cells): a
    whole sweep at 1024 tokens would take most of an hour here; its cost per cell is what
    grows with length."""
    last = 11
    return {
        "logit_lens": (AnalysisSpec(kind="logit_lens", model=ref, prompt=pair["clean"], top_k=10),
                       logit_lens.run),
        "activation_patching (head_out, last layer)": (
            AnalysisSpec(kind="activation_patching", model=ref, granularity="head_out",
                         layer=last, **pair), activation_patching.run),
        "attribution_patching (AtP, all nodes)": (
            AnalysisSpec(kind="attribution_patching", model=ref, exact=False, **pair),
            attribution_patching.run),
        "dla": (AnalysisSpec(kind="dla", model=ref, prompt=pair["clean"], answer=pair["answer"],
                             wrong=pair["wrong"]), dla.run),
    }


def exponent(lengths, values) -> float:
    """The slope of log(value) against log(length)."""
    return float(np.polyfit(np.log(lengths), np.log(np.maximum(values, 1e-9)), 1)[0])


def scaling_rows(model, ref) -> list[dict]:
    measured: dict[str, list[tuple[float, float]]] = {}
    for length in LENGTHS:
        pair = pair_of_length(model.bridge, length)
        for name, (spec, run) in _specs(ref, pair).items():
            # Time: the first call at each length, with glibc's own allocator settings.
            # Memory: the second, measured as `peak_memory` does (a length's first call peaks
            # higher, e.g. the logit lens at 1024 tokens 1.5 GB against 0.96 GB after it).
            seconds, _ = timed(lambda run=run, spec=spec: run(model, spec), repeats=1, warmup=0)
            _, peak_mib, _ = peak_memory(lambda run=run, spec=spec: run(model, spec))
            measured.setdefault(name, []).append((seconds, peak_mib))
    rows = []
    for name, points in measured.items():
        times, peaks = zip(*points)
        rows.append(row(
            f"scaling: {name}, GPT-2-small shape", times[-1], times[0],
            exponent(LENGTHS, times), None, "report", None,
            "ratio = time exponent; " + ", ".join(
                f"{n} tokens {t:.2f} s +{m:.0f} MiB" for n, t, m in zip(LENGTHS, times, peaks))
            + f"; memory exponent {exponent(LENGTHS, peaks):.2f}"))
    return rows

"""The benchmark's table: rows (as in `bench/results.json`) -> the Markdown that `make bench`
prints and the README's "Performance" section holds. No side effects on import, unlike
`bench.common`, so the docs test can render it."""
from __future__ import annotations


def _num(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float) and (value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4)):
        return f"{value:.1e}"
    return f"{value:.{digits}g}"


def _ratio(r) -> str:
    if r["ratio"] is None:
        return "-"
    plain = r["name"].startswith(("neuron", "scaling", "model size"))  # a share / an exponent
    return f"{r['ratio']:.3g}" + ("" if plain else "x")


def table(results) -> str:
    head = ("name", "ours (s)", "reference (s)", "ratio", "max abs diff", "target", "met")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        # a row with no target to meet says so: "reported" is its verdict
        met = "error" if r.get("error") else {True: "yes", False: "no", None: "reported"}[r["met"]]
        cells = (r["name"], _num(r["ours_s"]), _num(r["reference_s"]), _ratio(r),
                 _num(r["max_diff"], 2), r["target"], met)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['name']}: {r.get('error') or r['note']}" for r in results
             if r.get("error") or r["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def growth_table(results) -> str:
    """The model-size rows (those with `shapes`) as one table: an analysis per line, its
    seconds and own peak memory per shape, the exponents, and the largest model that fits."""
    rows = [r for r in results if r.get("shapes")]
    if not rows:
        return ""
    shapes = list(rows[0]["shapes"])
    head = ["analysis (64 tokens)",
            *(f"{name} ({rows[0]['shapes'][name]['params'] / 1e6:.0f}M)" for name in shapes),
            "time exponent", "memory exponent", "fits here, fp32 / bf16"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["kind"], *(f"{r['shapes'][n]['seconds']:.2f} s, +{r['shapes'][n]['peak_mib']:.0f} MiB"
                              for n in shapes),
                 f"{r['ratio']:.2f}", f"{r['memory_exponent']:.2f}",
                 f"{r['fits_fp32'] / 1e9:.1f}B / {r['fits_bf16'] / 1e9:.1f}B"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

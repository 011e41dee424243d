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
    plain = r["name"].startswith(("neuron", "scaling"))  # a share / an exponent, not a speed-up
    return f"{r['ratio']:.3g}" + ("" if plain else "x")


def table(results) -> str:
    head = ("name", "ours (s)", "reference (s)", "ratio", "max abs diff", "target", "met")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        met = "error" if r.get("error") else {True: "yes", False: "no", None: "-"}[r["met"]]
        cells = (r["name"], _num(r["ours_s"]), _num(r["reference_s"]), _ratio(r),
                 _num(r["max_diff"], 2), r["target"], met)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['name']}: {r.get('error') or r['note']}" for r in results
             if r.get("error") or r["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))

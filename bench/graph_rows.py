"""The graph kind's cost: one attribution graph of a 32-token prompt on the embedded model
(shipped transcoders), against a forward of the same prompt, in the same run."""
from __future__ import annotations

from analyses import AnalysisSpec
from bench.common import row, timed

PROMPT_32 = ("When Mary and John went to the store, John gave a drink to Mary. Then the cat sat on "
             "the mat and Lily saw a big red ball in the park with her friend Tom and")


def graph_row(label, model, ref):
    from analyses.kinds.graph.run import run
    from analyses.kinds.tokens import prompt_tokens

    bridge = model.bridge
    tokens = prompt_tokens(bridge, PROMPT_32)[:, :32]
    prompt = bridge.tokenizer.decode(tokens[0, 1:])  # 31 tokens after BOS: 32 in all
    spec = AnalysisSpec(kind="graph", model=ref, prompt=prompt)
    t_fwd = timed(lambda: bridge(tokens))[0]
    t_graph, result = timed(lambda: run(model, spec), repeats=1, warmup=0)
    meta = result.meta
    return row(f"graph: attribution graph / forward, {label}", t_graph, t_fwd, t_graph / t_fwd, None,
               "<= 30 s", t_graph <= 30,
               f"{meta['n_tokens']} tokens, {meta['targets']} targets in {meta['passes']} batched passes "
               f"({meta['forwards']} forward-or-backward calls on up to 256 copies); "
               f"ratio = graph / one forward of the prompt")

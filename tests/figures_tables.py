"""Hand-made result tables for figure tests (the figure and app tests share them)."""
import pandas as pd

from analyses.kinds.logit_lens import TARGET_COLUMNS, TOP_COLUMNS

LAYERS = ["0_pre", "1_pre", "final_post"]
INPUTS = ["<|endoftext|>", "When", " Mary", "\u200b<b>"]


def top_table(k: int = 2) -> pd.DataFrame:
    """[layer, pos, k] with token_str 'L{layer}P{pos}R{rank}', prob decreasing with rank."""
    rows = []
    for li, layer in enumerate(LAYERS):
        for p, tok in enumerate(INPUTS):
            for r in range(1, k + 1):
                token_str = " <i>&" if (li, p, r) == (2, 3, 1) else f"L{li}P{p}R{r}"
                rows.append(dict(layer=layer, layer_index=li, position=p, token=tok, rank=r,
                                 token_id=100 + r, token_str=token_str, prob=0.5 / r + 0.1 * li,
                                 logit=1.0))
    frame = pd.DataFrame(rows)
    assert set(TOP_COLUMNS) <= set(frame.columns)
    return frame.sample(frac=1.0, random_state=0)  # order must not matter


def target_table() -> pd.DataFrame:
    rows = []
    for li, layer in enumerate(LAYERS):
        for p in range(len(INPUTS)):
            for tid, tok, rank in ((7, " Mary", 50 - 20 * li), (8, "<John>", 3)):
                rows.append(dict(layer=layer, layer_index=li, position=p, token_id=tid,
                                 token_str=tok, rank=rank + p, prob=1.0 / (rank + p)))
    frame = pd.DataFrame(rows)
    assert set(TARGET_COLUMNS) <= set(frame.columns)
    return frame

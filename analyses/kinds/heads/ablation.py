"""Ablation of the detectors' top heads: with `ablate=1`, each detector's top k heads are
mean-ablated (`analyses.kinds.interventions.ablation`: their `hook_z` replaced, after BOS,
by its mean over the behaviour's own inputs), and so are RANDOM_SETS seeded sets of k random
other heads; the change in the detector's behaviour is reported for each."""
from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.errors import SpecError
from analyses.core.progress import Progress, silent
from analyses.core.spec import AnalysisSpec
from analyses.kinds.bos import after_bos
from analyses.kinds.heads.behaviours import BEHAVIOURS, Behaviour
from analyses.kinds.heads.detection import Detected
from analyses.kinds.heads.detectors import COLUMNS, DETECTORS
from analyses.kinds.heads.probes import Probe, chunk_rows
from analyses.kinds.interventions.ablation import MeanAfterBos, replace_after_bos

RANDOM_SETS = 5  # random head sets the top heads' ablation is compared with
AFTER_BOS = 1  # every probe row begins with BOS (probes.py), so ablation starts at position 1


def ablation_k(n_layers: int, n_heads: int) -> int:
    """Heads ablated per detector unless `top_k` says: 4, or 2% of all heads in big models
    (GPT-2 medium: 8), never more than half of them (the random sets draw from the rest).
    Four, because the behaviours are spread: the embedded model's needle recall survives
    its top two retrieval heads ablated (96%) but not its top four (17%)."""
    total = n_layers * n_heads
    return max(1, min(max(4, round(0.02 * total)), total // 2))


def heads_to_ablate(spec: AnalysisSpec, n_layers: int, n_heads: int) -> int:
    """k: the spec's `top_k`, refused when the random sets would have too few heads to draw from."""
    total = n_layers * n_heads
    if spec.top_k is None:
        return ablation_k(n_layers, n_heads)
    if spec.top_k > total // 2:
        raise SpecError("top_k", f"{spec.top_k} heads is more than half of this model's {total}: "
                                 f"the random sets of as many other heads need the rest "
                                 f"(at most {total // 2})")
    return spec.top_k


@torch.no_grad()
def mean_z(bridge, probe: Probe) -> dict[int, Float[Tensor, "head d_head"]]:
    """Each layer's `hook_z` averaged over the probe's sequences and positions after BOS."""
    means = {layer: MeanAfterBos(AFTER_BOS) for layer in range(bridge.cfg.n_layers)}

    def keep(layer):
        def hook(z, hook):  # [batch, pos, head, d_head]
            means[layer].add(z)
        return hook

    step = chunk_rows(bridge, probe)
    for start in range(0, len(probe.tokens), step):
        hooks = [(f"blocks.{layer}.attn.hook_z", keep(layer)) for layer in means]
        bridge.run_with_hooks(probe.rows(start, start + step).tokens, fwd_hooks=hooks)
    return {layer: mean.mean for layer, mean in means.items()}


def ablation_hooks(heads: list[tuple[int, int]], means: dict[int, Tensor]) -> list[tuple]:
    """Forward hooks that set each (layer, head)'s `hook_z` to its mean, after BOS."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def ablate(layer, chosen):
        def hook(z, hook):  # [batch, pos, head, d_head], whole sequences: position 0 is BOS
            changeable = after_bos(torch.arange(z.shape[1], device=z.device), AFTER_BOS)
            return replace_after_bos(z, means[layer], changeable, chosen)
        return hook

    return [(f"blocks.{layer}.attn.hook_z", ablate(layer, chosen)) for layer, chosen in by_layer.items()]


@torch.no_grad()
def measure(bridge, behaviour: Behaviour, probe: Probe, heads: list[tuple[int, int]] = (),
            means: dict[int, Tensor] | None = None) -> float:
    """The behaviour's mean over the probe, with `heads` mean-ablated."""
    hooks = ablation_hooks(heads, means) if heads else []
    values = []
    step = chunk_rows(bridge, probe)
    for start in range(0, len(probe.tokens), step):
        part = probe.rows(start, start + step)
        logits = bridge.run_with_hooks(part.tokens, fwd_hooks=hooks)
        values.append(behaviour.measure(part, logits))
    return torch.cat(values).float().mean().item()


def head_label(heads: list[tuple[int, int]]) -> str:
    return ",".join(f"L{layer}H{head}" for layer, head in heads)


def ablation_rows(bridge, names: list[str], found: dict[str, Detected], probes: dict[str, Probe],
                  k: int, seed: int, progress: Progress = silent) -> list[dict]:
    """Per scored detector: its behaviour with its top k heads ablated, then with each of
    RANDOM_SETS sets of k random other heads."""
    means: dict[str, dict] = {}  # behaviour probe -> mean z; shared by detectors of one behaviour
    baselines: dict[str, float] = {}
    scored = [n for n in names if found[n].refused is None]
    rows = []
    for i, name in enumerate(scored):
        progress(i / len(scored), f"ablating the top {name} heads and {RANDOM_SETS} random sets")
        behaviour = BEHAVIOURS[DETECTORS[name].behaviour]
        probe = probes[behaviour.probe]
        if behaviour.metric not in baselines:
            means[behaviour.probe] = means.get(behaviour.probe) or mean_z(bridge, probe)
            baselines[behaviour.metric] = measure(bridge, behaviour, probe)
        baseline = baselines[behaviour.metric]
        top, random_sets = ablated_heads(name, found[name].scores[..., COLUMNS.index("score")], k, seed)
        for label, heads in [("top", top)] + [("random", r) for r in random_sets]:
            after = measure(bridge, behaviour, probe, heads, means[behaviour.probe])
            drop = baseline - after if behaviour.higher_is_better else after - baseline
            rows.append(dict(detector=name, heads=head_label(heads), ablated=label,
                             metric=behaviour.metric, baseline=baseline, after=after, drop=drop))
    return rows


def ablated_heads(name: str, scores: Float[Tensor, "layer head"], k: int, seed: int
                  ) -> tuple[list[tuple[int, int]], list[list[tuple[int, int]]]]:
    """The detector's top k heads (ties: the earlier head first) and RANDOM_SETS seeded sets
    of k other heads."""
    n_heads = scores.shape[1]
    order = torch.argsort(scores.flatten(), descending=True, stable=True).tolist()
    rng = np.random.default_rng([seed, 100 + list(DETECTORS).index(name)])
    others = order[k:]
    random_sets = [sorted(int(i) for i in rng.choice(others, size=k, replace=False))
                   for _ in range(RANDOM_SETS)]
    return ([divmod(i, n_heads) for i in order[:k]],
            [[divmod(i, n_heads) for i in chosen] for chosen in random_sets])


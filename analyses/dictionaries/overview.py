"""A folder of dictionaries as tables, without torch: what the app's dictionaries page shows
(the card, DICTIONARIES.md, writes the same numbers as markdown).

- `sets(root)`: the folders under data/dictionaries that hold dictionary directories;
- `metrics_frame(folder)`: one row per dictionary: its config, metrics and the issue-27
  targets it misses;
- `lexicon_frames(folder)`: per dictionary (rows) and lexicon category (columns), the best
  latent's F1 and the best neuron's;
- `by_kind_frames(folder)`: per dictionary (rows) and held-out document type (columns),
  explained variance, each type's share of the variance, and CE recovered.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analyses.dictionaries import card, files


def sets(root: Path) -> list[Path]:
    """Folders holding at least one dictionary directory (with metrics), shipped ones first."""
    folders = {cfg.parent.parent for cfg in Path(root).glob("**/" + files.CONFIG)
               if (cfg.parent / files.METRICS).is_file()}
    return sorted(folders, key=lambda f: (f.relative_to(root).parts[0] == "trained", str(f)))


def metrics_frame(folder: Path) -> pd.DataFrame:
    rows = []
    for cfg, m in card.rows(folder):
        transcode = bool(cfg.get("transcode"))
        seconds = m.get("train_seconds")
        tokens = card.stage_tokens(cfg)  # train s counts every stage's seconds
        rows.append({"site": cfg.get("site", ""), "kind": "transcoder" if transcode else "SAE",
                     "latents": cfg.get("num_latents"), "k": cfg.get("k"),
                     "encoding": "matching pursuit" if cfg.get("encoding") == "matching_pursuit" else "TopK",
                     "Matryoshka prefixes": ", ".join(map(str, cfg.get("matryoshka_prefixes") or [])) or "–",
                     "Matryoshka release tokens": cfg.get("matryoshka_release_tokens") or None,
                     "train tokens": cfg.get("tokens_seen"),
                     "KL fine-tune": card.kl_finetune(cfg), "train s": seconds,  # the fine-tune's seconds included
                     "tokens/s": tokens / seconds if seconds and tokens else None,
                     "L0": m["l0"], "explained variance": m["explained_variance"],
                     "CE recovered": m["ce_recovered"], "CE recovered SE": m.get("ce_recovered_se"),
                     "KL": m["kl"], "dead": m["dead_share"], "dense": m["dense_share"], "eval tokens": m["tokens"],
                     "CE tokens": m.get("ce_tokens"),
                     "targets missed": "; ".join(card.misses(m, transcode)) or "all met"})
    return pd.DataFrame(rows)


def lexicon_frames(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latent F1, best-neuron F1): [dictionary site, category] each; NaN where the held-out
    text had no token of that category."""
    latent, neuron = {}, {}
    for cfg, m in card.rows(folder):
        lexicon = m.get("lexicon") or {}
        latent[cfg.get("site", "")] = {c: e.get("latent_f1") for c, e in lexicon.items()}
        neuron[cfg.get("site", "")] = {c: e.get("neuron_f1") for c, e in lexicon.items()}
    return (pd.DataFrame.from_dict(latent, orient="index", dtype=float),
            pd.DataFrame.from_dict(neuron, orient="index", dtype=float))


def by_kind_frames(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(explained variance, share of the site's variance, CE recovered): [dictionary site,
    document type] each, from metrics.json's `*_by_doc_kind`; NaN where a dictionary was
    measured before that split (no rows at all when none was)."""
    explained, share, ce = {}, {}, {}
    for cfg, m in card.rows(folder):
        site = cfg.get("site", "")
        variance = m.get("explained_variance_by_doc_kind") or {}
        if not variance:
            continue
        explained[site] = {k: e.get("explained_variance") for k, e in variance.items()}
        share[site] = {k: e.get("variance_share") for k, e in variance.items()}
        ce[site] = {k: e.get("ce_recovered") for k, e in (m.get("ce_by_doc_kind") or {}).items()}
    frames = [pd.DataFrame.from_dict(d, orient="index", dtype=float) for d in (explained, share, ce)]
    kinds = sorted(set().union(*(f.columns for f in frames)))
    return tuple(f.reindex(index=list(explained), columns=kinds) for f in frames)


def density_histograms(folder: Path) -> dict[str, dict]:
    """site -> its metrics.json's density histogram."""
    return {cfg.get("site", ""): m["density_histogram"] for cfg, m in card.rows(folder)
            if "density_histogram" in m}

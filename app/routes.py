"""The kind → page table: which page shows each catalogued kind, its path and its title.

Importable without Streamlit (the router, links, tests and the bench read it).
`tests/app/test_pages.py` fails when a catalogued kind has no page here, or a page names a
kind the catalogue does not know, so the two lists cannot drift apart.
"""
from __future__ import annotations

HOME = "views/home.py"  # never a `pages/` folder: see app/__init__.py
NOTEBOOK = "views/notebook.py"  # the notebook page, served at /notebook (`NOTEBOOK_PATH`)
NOTEBOOK_PATH = "notebook"
DICTIONARIES = "views/dictionaries.py"  # sparse dictionaries: metrics, training; at /dictionaries
DICTIONARIES_PATH = "dictionaries"
# kind -> page script, relative to app/main.py. A new kind: one line here plus its page.
PAGES: dict[str, str] = {
    "logit_lens": "views/logit_lens.py",
    "heads": "views/heads.py",
    "activation_patching": "views/activation_patching.py",
    "neurons": "views/neurons.py",
    "dla": "views/dla.py",
    "attribution_patching": "views/attribution_patching.py",
    "attention": "views/attention.py",
    "steering": "views/steering.py",
    "ablation_sweep": "views/ablation_sweep.py",
    "circuit": "views/circuit.py",
    "knockout": "views/knockout.py",  # attention edges cut (the ablation sweep knocks out components)
    "features": "views/features.py",
    "latent_index": "views/latent_index.py",
    "sparsity": "views/sparsity.py",
    "graph": "views/graph.py",
    "probe": "views/probe.py",
}
TITLES = {  # page titles where "Kind name" (from the kind) reads badly
    "dla": "Direct logit attribution",
    "knockout": "Attention knockout",
    "features": "Prompt through a dictionary",
    "latent_index": "Latent dashboard",
    "graph": "Attribution graph",
}


def url_path(kind: str) -> str:
    """The page's path under the app: the kind itself (`/logit_lens`)."""
    return kind


def page_file(kind: str) -> str:
    """The page script of a kind, relative to app/main.py (what st.page_link takes)."""
    return PAGES[kind]


def page_title(kind: str) -> str:
    return TITLES.get(kind, kind.replace("_", " ").capitalize())

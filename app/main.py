"""The router: `streamlit run app/main.py`.

Which analysis pages exist comes from the registry (`analyses.registry.analyses()`):
each registered kind is shown through its page module in `PAGES`, in registry order.
`tests/app/test_pages.py` fails when a registered kind has no page here (or a page
names a kind the registry does not know), so the two lists cannot drift apart.

Each page is served at `/<kind>`, so a share link is `<app>/<kind>?<spec query>`
(built and parsed only in `app/links.py`).
"""
from __future__ import annotations

import sys
from pathlib import Path

HOME = "views/home.py"  # never a `pages/` folder: see app/__init__.py
# kind -> page script, relative to this file. A new kind: one line here plus its page.
PAGES: dict[str, str] = {
    "logit_lens": "views/logit_lens.py",
    "heads": "views/heads.py",
    "activation_patching": "views/activation_patching.py",
    "neurons": "views/neurons.py",
    "dla": "views/dla.py",
    "attribution_patching": "views/attribution_patching.py",
}


def main() -> None:
    import streamlit as st

    from analyses.registry import analyses
    from app import links

    st.set_page_config(page_title="Interpretability workbench", page_icon=":material/biotech:",
                       layout="wide")
    home = st.Page(HOME, title="Home", icon=":material/home:", default=True)
    pages = [st.Page(PAGES[kind], title=links.page_title(kind), url_path=links.url_path(kind))
             for kind in analyses() if kind in PAGES]
    st.navigation({"Workbench": [home], "Analyses": pages}).run()


if __name__ == "__main__":  # Streamlit runs the main script as __main__; importers get PAGES
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # so pages can `import app.…` and `import analyses`
    main()

"""The router: `streamlit run app/main.py`. It only routes: one page per catalogued kind
(`app/routes.py`), in catalogue order, each served at `/<kind>`, so a share link is
`<app>/<kind>?<spec query>` (built and parsed only in `app/links.py`).

Nothing here imports torch: the home page and every page's form draw before the first
analysis loads it.
"""
import streamlit as st

from analyses.core.catalogue import CATALOGUE
from app.components.warmup import warm_up_in_background
from app.routes import DICTIONARIES, DICTIONARIES_PATH, HOME, NOTEBOOK, NOTEBOOK_PATH, PAGES, page_title, url_path

st.set_page_config(page_title="Interpretability workbench", page_icon=":material/biotech:",
                   layout="wide")
home = st.Page(HOME, title="Home", icon=":material/home:", default=True)
notebook = st.Page(NOTEBOOK, title="Notebook", icon=":material/menu_book:", url_path=NOTEBOOK_PATH)
dictionaries = st.Page(DICTIONARIES, title="Dictionaries", icon=":material/library_books:",
                       url_path=DICTIONARIES_PATH)
pages = [st.Page(PAGES[kind], title=page_title(kind), url_path=url_path(kind))
         for kind in CATALOGUE if kind in PAGES]
st.navigation({"Workbench": [home, notebook, dictionaries], "Analyses": pages}).run()
warm_up_in_background()  # the page is drawn: now load torch for the first run

"""The Streamlit app: `main.py` routes, `routes.py` says which page shows each kind, `views/`
draw, `components/` are the shared widgets.

The page scripts live in `views/`, not `pages/`: Streamlit treats a `pages/` folder beside
the entry script as an old-style multipage app until `st.navigation` first runs, so a
share link opened on a fresh server would run the page without the router.

Run it with `streamlit run app/main.py` (or `make run`). Pages import `app.…` and
`analyses.…` as installed packages (`pip install -e .`, done by `make setup`): nothing edits
`sys.path`.
"""

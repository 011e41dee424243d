"""The Streamlit app: `main.py` routes, `views/` draw, `components/` are the shared widgets.

The page scripts live in `views/`, not `pages/`: Streamlit treats a `pages/` folder beside
the entry script as an old-style multipage app until `st.navigation` first runs, so a
share link opened on a fresh server would run the page without the router.

Run it with `streamlit run app/main.py`. Pages import `app.…` modules: `main.py` puts the
repository root on `sys.path` before anything else runs.
"""

"""The server configuration keeps Streamlit's XSRF and CORS protection on."""
import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_xsrf_and_cors_protection_are_on():
    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True


def test_errors_show_no_details_to_visitors():
    client = tomllib.loads(CONFIG.read_text()).get("client", {})
    assert client.get("showErrorDetails") == "none"


def test_no_source_watching_and_app_static_files_are_served():
    """A watcher resolves every imported module's path on each new session (torch's
    thousands: 0.3-0.7 s of a share link's first paint); app/static/ holds plotly.js."""
    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["fileWatcherType"] == "none"
    assert server["enableStaticServing"] is True

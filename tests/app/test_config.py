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

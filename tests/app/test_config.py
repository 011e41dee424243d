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


def test_uploads_over_the_prompt_set_limit_are_refused_before_they_are_read():
    """Streamlit refuses a larger file itself (MB units) instead of reading it whole first;
    the set's own check (MAX_BYTES, with its message) still holds below that."""
    from analyses.core import datasets

    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["maxUploadSize"] == -(-datasets.MAX_BYTES // 2**20)  # MiB, rounded up


def test_the_app_limits_each_job_unless_the_operator_chose(monkeypatch):
    import importlib

    import app.components.run as run
    from analyses.runtime.jobs import TIME_LIMIT_ENV, job_time_limit

    monkeypatch.delenv(TIME_LIMIT_ENV, raising=False)
    importlib.reload(run)
    assert job_time_limit() == run.APP_JOB_TIME_LIMIT_S < run.WAIT_S  # a waiting visitor sees why
    monkeypatch.setenv(TIME_LIMIT_ENV, "0")  # the operator's choice stands: no limit
    importlib.reload(run)
    assert job_time_limit() is None

"""Fetch plotly.js's cartesian bundle for `app/components/plot.py`: `python -m
app.components.plotly_bundle` (`make setup` runs it).

The bundle comes from the npm registry (`npm pack`, which checks the package's integrity
hash against the registry) at exactly the plotly.js version the installed Python `plotly`
package ships, so a figure's JSON is read by the plotly.js it was written for. Without npm
or the registry the app still works: figures fall back to `st.plotly_chart`.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from app.components.plot import BUNDLE

PACKAGE = "plotly.js-cartesian-dist-min"
FILE = "package/plotly-cartesian.min.js"


def plotly_js_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


def bundle_version(path: Path = BUNDLE) -> str | None:
    """The version in the bundle's banner (`* plotly.js (cartesian - minified) v4.1.1`), or
    None when absent."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as file:
        found = re.search(r"plotly\.js[^\n]* v(\d+\.\d+\.\d+)", file.read(300))
    return found.group(1) if found else None


def fetch(version: str, out: Path = BUNDLE) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([npm, "pack", f"{PACKAGE}@{version}", "--silent", "--pack-destination", folder],
                       check=True, capture_output=True, timeout=300)
        tarball = next(Path(folder).glob("*.tgz"))
        with tarfile.open(tarball) as archive:
            archive.extract(FILE, folder, filter="data")
            archive.extract("package/LICENSE", folder, filter="data")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(folder) / FILE, out)
        shutil.copyfile(Path(folder) / "package" / "LICENSE", out.with_name("plotly-cartesian.LICENSE"))


def main() -> int:
    version = plotly_js_version()
    if bundle_version() == version:
        return 0
    try:
        fetch(version)
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        print(f"plotly.js {version} cartesian bundle not fetched ({err}): figures use Streamlit's "
              "own Plotly, slower on a fresh browser", file=sys.stderr)
        return 0  # not fatal: the app falls back
    print(f"fetched {PACKAGE}@{version} to {BUNDLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

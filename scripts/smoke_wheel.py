"""Smoke test of an installed (non-editable) azml-client wheel; run by scripts/wheel-smoke with the venv's Python.

Checks that the package is imported from the venv's site-packages (not the source tree), ships ``py.typed``, and
that the ``azml`` entry point answers ``--help`` and runs ``azml demo`` against the built-in emulator.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time
from pathlib import Path


def main(venv: Path) -> None:
    import azml_client

    package = Path(azml_client.__file__).resolve().parent
    site = Path(sys.prefix).resolve()
    assert site == venv.resolve(), f"not running in the smoke venv: {site}"
    assert package.is_relative_to(site), f"azml_client imported from {package}, not from the venv {site}"
    assert (package / "py.typed").is_file(), f"py.typed missing from {package}"

    dist = importlib.metadata.distribution("azml-client")
    direct_url = dist.read_text("direct_url.json")
    editable = bool(direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))
    assert not editable, "azml-client is an editable install, not the wheel"
    assert dist.version == azml_client.__version__, (dist.version, azml_client.__version__)

    azml = venv / "bin" / "azml"
    helped = subprocess.run([str(azml), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0, f"azml --help exited {helped.returncode}: {helped.stderr}"
    assert "demo" in helped.stdout, helped.stdout

    started = time.monotonic()
    demo = subprocess.run([str(azml), "demo"], capture_output=True, text=True, timeout=300, check=False)
    assert demo.returncode == 0, f"azml demo exited {demo.returncode}:\n{demo.stdout}\n{demo.stderr}"
    print(
        f"wheel-smoke: azml-client {dist.version} from {package}: py.typed present, `azml --help` ok, "
        f"`azml demo` ok in {time.monotonic() - started:.1f} s"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""The README's example runs as written against the real server, and its API table names only
methods the client has."""

import re
import subprocess
import sys
from pathlib import Path

import flagstaff

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(make_setup):
    setup = make_setup()
    text = README.read_text()
    example = text.split("## Example", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", example],
        env={"FLAGSTAFF_URL": setup.url, "FLAGSTAFF_KEY": setup.key, "FLAGSTAFF_CACHE_FILE": setup.cache_path,
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "new checkout for user-42" in out.stdout
    assert "True on TARGETING_MATCH None beta" in out.stdout
    assert "stream_connected=" in out.stdout
    assert Path(setup.cache_path).exists()


def test_the_readme_names_real_methods():
    table = README.read_text().split("The client's methods:", 1)[1].split("\n\n", 2)[1]
    names = set()
    for cell in re.findall(r"^\| `([^|]+)` \|", table, flags=re.M):
        names.update(re.findall(r"\b([a-z_]+)(?=\(| / )", cell))
    assert names >= {"bool_value", "evaluate", "all_flags", "on_change", "on_status", "status", "close"}, names
    for name in names - {"Client"}:
        assert callable(getattr(flagstaff.Client, name, None)), name

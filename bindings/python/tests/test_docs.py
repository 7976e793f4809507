"""docs/python.md: every Python block compiles, and the quickstart runs as
written (against the test issuer instead of port 8900)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, Issuer

DOC = ROOT / "docs" / "python.md"


def python_blocks() -> dict[str, str]:
    text = DOC.read_text()
    blocks = {}
    for i, m in enumerate(re.finditer(r"(?:<!-- example: (\S+)[^>]*-->\n)?```python\n(.*?)```", text, re.S)):
        blocks[m.group(1) or f"block {i}"] = m.group(2)
    return blocks


@pytest.mark.skipif(not DOC.exists(), reason="docs/python.md not in this tree")
def test_every_block_compiles() -> None:
    blocks = python_blocks()
    assert "quickstart.py" in blocks
    for name, code in blocks.items():
        compile(code, name, "exec")


@pytest.mark.skipif(not DOC.exists(), reason="docs/python.md not in this tree")
def test_quickstart_runs(issuer: Issuer) -> None:
    code = python_blocks()["quickstart.py"].replace("http://127.0.0.1:8900", issuer.url)
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sub: user aud: api" in done.stdout
    assert "cached: True" in done.stdout
    assert "rejected: 200 invalid_signature verification" in done.stdout

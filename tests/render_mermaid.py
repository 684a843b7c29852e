"""Render every Mermaid picture of the README and docs/ (``make docs-check``).

GitHub draws a ```mermaid block, or shows its source when the block does not parse:
rendering each with mermaid-cli is the only way to know a picture is a picture. Needs
``mmdc`` (``npm install @mermaid-js/mermaid-cli``, on PATH or in ``$MMDC``) and a
Chromium for it (``$PUPPETEER_CONFIG``, else ``/usr/bin/chromium`` when there is one);
without ``mmdc`` it says so and succeeds, so that ``make docs-check`` never blocks on a
missing tool.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```mermaid\n(.*?)^```", re.M | re.S)


def pictures() -> list[tuple[str, str]]:
    """(name, source) of every Mermaid block, named by page and position."""
    found = []
    for page in sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]):
        for index, source in enumerate(BLOCK.findall(page.read_text()), start=1):
            found.append((f"{page.relative_to(ROOT).with_suffix('')}-{index}", source))
    return found


def puppeteer_config(folder: Path) -> Path | None:
    if configured := os.environ.get("PUPPETEER_CONFIG"):
        return Path(configured)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    path = folder / "puppeteer.json"
    path.write_text(json.dumps({"executablePath": chromium, "args": ["--no-sandbox"]}))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the rendered files here (png or svg)")
    parser.add_argument("--format", choices=("svg", "png"), default="svg")
    args = parser.parse_args(argv)
    mmdc = os.environ.get("MMDC") or shutil.which("mmdc")
    if mmdc is None:
        print("docs-check: mmdc not found (npm install @mermaid-js/mermaid-cli); not rendered")
        return 0
    failed = 0
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        out = args.out or folder
        out.mkdir(parents=True, exist_ok=True)
        config = puppeteer_config(folder)
        for name, source in pictures():
            source_file = folder / f"{name.replace('/', '_')}.mmd"
            target = out / f"{name.replace('/', '_')}.{args.format}"
            source_file.write_text(source)
            command = [mmdc, "-q", "-i", str(source_file), "-o", str(target), "-b", "white"]
            if config is not None:
                command += ["-p", str(config)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)  # noqa: S603
            if done.returncode != 0 or not target.exists():
                failed += 1
                reason = (done.stderr.strip().splitlines() or ["no output"])[0]
                print(f"docs-check: {name}: does not render: {reason}")
            else:
                print(f"docs-check: {name}: rendered ({target.stat().st_size:,} bytes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

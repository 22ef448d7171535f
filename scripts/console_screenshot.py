"""Take docs/console.png: the review queue page as the console's browser test shows it.

Runs that test (a seeded stack on the embedded broker, the system's Chromium) and keeps
its screenshot of the queue page. Usage, from the repository root::

    .venv/bin/python scripts/console_screenshot.py [OUTPUT]   # default docs/console.png
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/integration/test_console_browser.py"


def main() -> int:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "console.png").resolve()
    env = {
        **os.environ,
        "MLCYCLE_CONSOLE_SCREENSHOT": str(output),
        "PYTHONPATH": str(ROOT / "services"),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST]
    done = subprocess.run(command, cwd=ROOT, env=env)
    if done.returncode == 0:
        print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

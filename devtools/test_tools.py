"""``make test``'s first step: the programs the full test suite needs besides Python, or how to get them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# (what, where it is looked for, why the tests need it)
NEEDED = (
    ("Chromium", "/usr/bin/chromium", "the queue page's browser test (tests/test_page_browser.py)"),
    ("promtool", "promtool", "the Prometheus alert rule tests (tests/test_ops_files.py)"),
)


def missing() -> list[tuple[str, str]]:
    out = []
    for name, where, why in NEEDED:
        found = Path(where).exists() if where.startswith("/") else shutil.which(where) is not None
        if not found:
            out.append((name, why))
    return out


def main() -> int:
    lacking = missing()
    if not lacking:
        return 0
    print("make test needs programs this machine does not have:", file=sys.stderr)
    for name, why in lacking:
        print(f"  - {name}: {why}", file=sys.stderr)
    print("On Debian or Ubuntu: sudo apt-get install chromium prometheus   (.ci/run does this on CI)\n"
          "Or run `make test-unit`: every test that needs no browser, broker or Redis.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

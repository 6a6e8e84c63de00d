"""Run every benchmark script under bench/ and print their figures.

Each script's temporary directories go into one run directory (TMPDIR; the lab servers set
their own tmpdir), which is removed at the end: what a script leaves there is named and its lab
processes stopped by PID, so `make bench` never fills /tmp with lab data directories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.leaks import leftovers, remove  # noqa: E402


def main() -> int:
    run_root = Path(tempfile.mkdtemp(prefix="drb-"))
    os.chmod(run_root, 0o755)  # the MariaDB and Galera labs' servers run as mysql
    failed = 0
    try:
        for script in sorted(Path(__file__).parent.glob("bench_*.py")):
            print(f"== {script.name}", flush=True)
            done = subprocess.run([sys.executable, str(script)], check=False, env={**os.environ, "TMPDIR": str(run_root)})
            failed += done.returncode != 0
            for leak in leftovers(run_root):
                print(f"   {script.name} left {leak.describe()}; removed", flush=True)
                remove(leak.path)
    finally:
        shutil.rmtree(run_root, ignore_errors=True)
    if failed:
        print(f"{failed} benchmark script(s) ended with an error (above)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

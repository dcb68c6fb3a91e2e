"""Wall time of the book's builds, as a reader and as the tests run them.

    python benchmarks/build.py --json benchmarks/results/build.json

Measures, each from a cold model cache (a fresh ``$VAELIB_DATA``) and an empty execution cache:

1. ``make notebooks book-quick``: quick-mode notebook validation plus the quick book build (the tests);
2. ``make book``: the reader's book;
3. ``make book`` again with nothing changed (Jupyter Book's execution cache);
4. ``make book`` after touching ``vaelib`` (every notebook must run again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(targets: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(["make", "-s", *targets], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--dataset", default=None, help="sets VAELIB_DATASET")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="vaelib-build-") as cache:
        env = {**os.environ, "VAELIB_DATA": cache}
        if args.dataset:
            env["VAELIB_DATASET"] = args.dataset
        shutil.rmtree(ROOT / "_build" / "quick", ignore_errors=True)
        results["quick_validation_and_build_s"] = timed(["notebooks", "book-quick"], env)
        for path in ("html", ".jupyter_cache", ".doctrees", "jupyter_execute"):
            shutil.rmtree(ROOT / "_build" / path, ignore_errors=True)
        results["reader_book_cold_s"] = timed(["book"], env)
        results["reader_book_rebuild_s"] = timed(["book"], env)
        marker = ROOT / "vaelib" / "__init__.py"
        original = marker.read_text()
        try:
            marker.write_text(original + "\n# touched by benchmarks/build.py\n")
            results["reader_book_after_vaelib_edit_s"] = timed(["book"], env)
        finally:
            marker.write_text(original)
    results["dataset"] = args.dataset or os.environ.get("VAELIB_DATASET", "mnist")
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

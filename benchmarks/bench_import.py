"""Import cost: ``import detectkit`` versus the heavy libraries it loads only when used.

    python benchmarks/bench_import.py [--runs 5]

Each import runs in a fresh interpreter (``python -X importtime`` is not used: it slows the
import); the median wall time of ``--runs`` runs is printed, with the modules that ended up
loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("azure", "mlflow", "matplotlib", "torch", "fastapi", "pandas")
CASES = {
    "python (nothing)": "pass",
    "import detectkit": "import detectkit",
    "detectkit.read_dataset + LabeledDataset": "from detectkit import read_dataset, LabeledDataset, Box",
    "detectkit.parse_response + evaluate": "from detectkit import parse_response, evaluate; import detectkit.evaluation",
    "import azure.ai.ml": "import azure.ai.ml",
    "import mlflow": "import mlflow",
}


def _run(code: str) -> tuple[float, list[str]]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for name, code in CASES.items():
        _run(code)  # warm the .pyc files
        times = []
        loaded: list[str] = []
        for _ in range(args.runs):
            t, loaded = _run(code)
            times.append(t)
        results[name] = {"median_s": round(statistics.median(times), 3), "heavy_loaded": loaded}
        print(f"{name:<45} {statistics.median(times):6.3f} s   heavy loaded: {loaded or '-'}")
    base = results["import detectkit"]["median_s"]
    for peer in ("import azure.ai.ml", "import mlflow"):
        print(f"ratio import detectkit / {peer}: {base / results[peer]['median_s']:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

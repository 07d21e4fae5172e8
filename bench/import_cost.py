"""What a DAG file pays to import the provider's operators and sensors, next to ``airflow.sdk``.

Every DAG-processor parse of a DAG file imports what the file imports. This measures, in fresh
interpreters (median of ``--runs``), the time to import ``airflow.sdk`` and then, in the same
process, the provider modules a DAG file uses; it prints the ratio (goal: at most 5%) and the
slowest modules the second import still loads (from ``python -X importtime``).

    .venv/bin/python bench/import_cost.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

MODULES = (
    "airflow_provider_gist.operators.gist",
    "airflow_provider_gist.operators.ingest",
    "airflow_provider_gist.operators.store",
    "airflow_provider_gist.operators.refresh",
    "airflow_provider_gist.sensors.indexing",
)
#: Modules a DAG file must not load: the async stack, the HTTP clients, the emulator.
MUST_NOT_LOAD = ("aiohttp", "requests", "airflow.providers.http", "airflow_provider_gist.emulator")

_PROBE = f"""
import sys, time
t = time.perf_counter(); import airflow.sdk; sdk = time.perf_counter() - t
before = set(sys.modules)
t = time.perf_counter()
for name in {MODULES!r}:
    __import__(name)
ours = time.perf_counter() - t
new = set(sys.modules) - before
loaded = [m for m in {MUST_NOT_LOAD!r} if any(k == m or k.startswith(m + ".") for k in new)]
print(sdk, ours, ",".join(loaded))
"""


def measure(runs: int) -> tuple[float, float, str]:
    sdk, ours, loaded = [], [], ""
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
        a, b, loaded = [*out.stdout.strip().split(" "), ""][:3]
        sdk.append(float(a))
        ours.append(float(b))
    return statistics.median(sdk), statistics.median(ours), loaded


def slowest_left(top: int = 8) -> list[tuple[int, str]]:
    """Cumulative import time (µs) of what importing our modules loads after ``airflow.sdk``."""
    code = "import airflow.sdk\nimport importlib\n" + "".join(f"import {m}\n" for m in MODULES)
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    lines = out.stderr.splitlines()
    # importtime prints each module after its dependencies; ours come after the last airflow.sdk line
    start = max(i for i, line in enumerate(lines) if line.rstrip().endswith("| airflow.sdk"))
    rows = []
    for line in lines[start + 1 :]:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            rows.append((int(parts[1]), parts[2]))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sdk, ours, loaded = measure(args.runs)
    print(f"import airflow.sdk:                     {sdk:.3f} s (median of {args.runs} fresh interpreters)")
    print(f"then the operators and sensors:         {ours:.3f} s")
    print(f"ratio (goal <= 5%):                     {ours / sdk:.1%}")
    print(f"of {', '.join(MUST_NOT_LOAD)}, loaded: {loaded or 'none'}")
    print("slowest imports left (cumulative µs, name):")
    for micros, name in slowest_left():
        print(f"  {micros:>8}  {name}")


if __name__ == "__main__":
    main()

"""Start-up: `reminder --help` and `reminder plan` on the sample, beside a bare interpreter.

Whole processes, interleaved, wall time. Targets: `--help` under 120 ms, `plan` under
250 ms on the 2-core development machine. The package and its dependencies are compiled
to bytecode first, as an installed package is: the runs measure imports, not compiling.

    .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from common import ROOT, sample_project, summary

ENV = {k: v for k, v in os.environ.items() if not k.startswith("REMINDER_")}


def wall(*command: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for folder in (ROOT / "reminder", Path(sysconfig.get_paths()["purelib"])):
        compileall.compile_dir(folder, quiet=2, workers=0)
    config = str(sample_project())
    reminder = str(ROOT / ".venv" / "bin" / "reminder")
    cases = {
        "python -c pass": (sys.executable, "-c", "pass"),
        "reminder --help": (reminder, "--help"),
        "reminder plan (sample)": (reminder, "--config", config, "plan"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, command in cases.items():
            times[name].append(wall(*command) * 1000)
    for name, values in times.items():
        print(summary(name, values, "ms"))


if __name__ == "__main__":
    main()

"""Run one of the GPU check's training runs as 1, 2, 4, ... concurrent `python -m llvfsr.train` processes.

Packing (issue 17): how many trials of the synthetic sweep share one GPU before they only split its throughput.
Each level starts `n` identical trainers (no Ray: plain processes, as Ray would start them), samples
``nvidia-smi --query-gpu=utilization.gpu,memory.used`` once a second, lets them train until every one has
finished its first epoch (start-up, CUDA and cuDNN warm-up), then for `--steady` seconds more and at least one more
epoch each, or until the level's `--budget` is spent, and stops them. Training never reaches its test evaluation:
the runs are sized by time, not epochs. Per level, ``<out>/n<k>/`` holds each trainer's log (``p<i>.log``), the
samples (``smi.csv``: unix time, utilisation %, memory MiB) and ``level.json`` (the steady window and each
trainer's exit); the table is written by ``scripts/gpu_check_summary.py``, which this script calls at the end.

    python scripts/gpu_check_train.py --run pack --levels 1,2,4,8 --out OUT/pack
    python scripts/gpu_check_train.py --run paper --levels 1 --steady 40 --budget 75 --out OUT/paper
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpu_check_runs import STORE_ROOT, run_flags  # noqa: E402
from gpu_check_summary import count_epochs  # noqa: E402

SPEED_FLAGS = {"fp32": [], "fast": ["--bf16", "--channels-last", "--fused-adam"]}
SMI_QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-l", "1"]


class Sampler:
    """``nvidia-smi -l 1`` in the background; each line is written with the unix time it was read at."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process = None
        if shutil.which("nvidia-smi") is None:
            path.write_text("")  # no GPU tool (the CPU rehearsal): an empty sample file
            return
        self.process = subprocess.Popen(SMI_QUERY, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        with self.path.open("w") as handle:
            for line in self.process.stdout:
                handle.write(f"{time.time():.3f},{line.strip()}\n")
                handle.flush()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.thread.join(timeout=5)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_level(n: int, flags: list[str], out: Path, steady: float, budget: float, poll: float = 0.5) -> dict:
    """Start `n` trainers with `flags`; stop them once all have finished epoch 1, then `steady` seconds and one more
    epoch each (or at `budget`)."""
    out.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(out / "smi.csv")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.time()
    procs, logs = [], []
    for i in range(n):
        log = (out / f"p{i}.log").open("w")
        command = [sys.executable, "-m", "llvfsr.train", *flags, "--out", str(out / f"run{i}")]
        procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
        logs.append(log)
    warm, at_warm = None, []
    try:
        while time.time() - start < budget:
            time.sleep(poll)
            if all(p.poll() is not None for p in procs):
                break  # every trainer ended by itself (an error: the runs are endless)
            epochs = [count_epochs(out / f"p{i}.log") for i in range(n)]
            if warm is None and min(epochs) >= 1:
                warm, at_warm = time.time(), epochs
            # Steady long enough, and every trainer has an epoch that ended in the steady window to measure.
            measured = warm is not None and all(e > w for e, w in zip(epochs, at_warm, strict=True))
            if measured and time.time() - warm >= steady:
                break
        stop = time.time()
        exits = [p.poll() for p in procs]  # None: still training when stopped (the normal case)
    finally:  # also when this script is stopped: no trainer may outlive it and share the GPU with the next step
        _stop(procs)
        sampler.stop()
        for i, log in enumerate(logs):
            log.close()
            shutil.rmtree(out / f"run{i}", ignore_errors=True)  # its checkpoint (40 MB at HR 256) is of no use
    level = {"processes": n, "start": start, "warm": warm, "stop": stop, "steady_target_s": steady,
             "budget_s": budget, "exit_before_stop": exits}  # fmt: skip
    (out / "level.json").write_text(json.dumps(level, indent=2))
    return level


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check_train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", choices=("pack", "paper"), required=True, help="the run (see gpu_check_runs.py)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per level)")
    p.add_argument("--levels", default="1,2,4,8", help="comma-separated numbers of concurrent trainers")
    p.add_argument("--steady", type=float, default=10.0, help="seconds to train after every trainer's first epoch")
    p.add_argument("--budget", type=float, default=30.0, help="seconds at most per level, start-up included")
    p.add_argument("--path", choices=tuple(SPEED_FLAGS), default="fast",
                   help="fast: bf16 + channels-last + fused Adam (no compile); fp32: plain eager")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="also torch.compile (each trainer compiles on its own)")
    p.add_argument("--device", default="auto", help="the trainers' --device")
    p.add_argument("--tiny", action="store_true", help="the CPU rehearsal's sizes")
    p.add_argument("--priors-root", default=STORE_ROOT, help="the prepared prior stores (gpu_check_runs.py prepare)")
    args = p.parse_args(argv)
    try:
        args.levels = [int(v) for v in args.levels.split(",")]
    except ValueError:
        p.error(f"--levels must be comma-separated integers, got {args.levels!r}")
    if any(v < 1 for v in args.levels) or args.steady <= 0 or args.budget <= 0:
        p.error("--levels, --steady and --budget must be positive")
    if not Path(args.priors_root).is_dir():
        p.error(f"--priors-root {args.priors_root}: no such folder; run `python scripts/gpu_check_runs.py prepare` "
                "on a machine with the project's venv and carry the folder")  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> int:
    from gpu_check_summary import summarise_runs, write_tables

    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a step's timeout: unwind, stopping the trainers
    flags = run_flags(args.run + ("-tiny" if args.tiny else ""), args.priors_root)
    flags += ["--device", args.device, *SPEED_FLAGS[args.path], *(["--compile"] if args.compile else [])]
    out = Path(args.out)
    for n in args.levels:
        level = run_level(n, flags, out / f"n{n}", args.steady, args.budget)
        state = "warm" if level["warm"] else "NOT warm (no epoch finished in every trainer)"
        print(f"{n} trainer(s): {state}, stopped after {level['stop'] - level['start']:.0f} s", flush=True)
    rows = summarise_runs(out)
    print(write_tables(rows, out, title=f"{args.run} ({args.path}{' + compile' if args.compile else ''})"))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

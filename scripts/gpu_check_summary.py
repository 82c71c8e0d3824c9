"""Read the GPU check's outputs into tables: training logs + nvidia-smi samples, benchmark CSVs, one summary.md.

Training runs (`scripts/gpu_check_train.py`): per level of concurrency, each trainer's log lines
``<asctime> INFO epoch k/N {json}`` (`llvfsr.train`) and the sampled GPU utilisation give

- ``img/s steps``: the sum over trainers of their median `images_per_second` (the train steps alone);
- ``img/s wall``: the sum over trainers of the faces of their epochs divided by the time those epochs took from
  log line to log line, i.e. with validation and checkpointing, what a trial really gets;
- ``GPU util`` mean and minimum, and the peak memory used, over the steady window: from the moment every trainer
  has finished its first epoch to the moment the check stopped them. Only epochs that ended in that window count.

    python scripts/gpu_check_summary.py runs OUT/pack          # rewrite OUT/pack/table.{md,csv}
    python scripts/gpu_check_summary.py merge-bench EAGER.csv COMPILE.csv -o bench_gpu.csv
    python scripts/gpu_check_summary.py report OUT             # OUT/summary.md from everything the check wrote
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import time
from pathlib import Path

EPOCH_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO epoch (\d+)/\d+ (\{.*\})\s*$")
TABLE_FIELDS = ["processes", "ok", "epochs", "img_s_steps", "img_s_wall", "per_trainer_img_s_wall", "vs_one",
                "util_mean", "util_min", "mem_max_mib", "samples", "steady_s", "note"]  # fmt: skip
BENCH_COMPILED = "fast-compile"  # the path label of torch.compile'd fast rows in the merged CSV


def parse_log(path: Path) -> list[tuple[float, int, dict]]:
    """(unix time, epoch, metrics) of each epoch line of a `python -m llvfsr.train` log (local-time stamps)."""
    entries = []
    if not path.exists():
        return entries
    for line in path.read_text(errors="replace").splitlines():
        match = EPOCH_LINE.match(line)
        if match:
            stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + int(match.group(2)) / 1000
            entries.append((stamp, int(match.group(3)), json.loads(match.group(4))))
    return entries


def count_epochs(path: Path) -> int:
    return len(parse_log(path))


def read_samples(path: Path) -> list[tuple[float, float, float]]:
    """(unix time, GPU utilisation %, memory used MiB) per line of a sampler file; unreadable lines are skipped."""
    samples = []
    if not path.exists():
        return samples
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            samples.append((float(parts[0]), float(parts[1]), float(parts[2])))
        except (ValueError, IndexError):
            continue  # e.g. "[N/A]" or a line cut by the stop
    return samples


def trainer_rates(entries: list[tuple[float, int, dict]], window: tuple[float, float]) -> dict | None:
    """Steps and wall images/s of one trainer over its epochs that ended inside `window` (None: no such epoch)."""
    inside = [k for k, (t, _, _) in enumerate(entries) if window[0] <= t <= window[1] and k > 0]
    if not inside:
        return None
    faces = sum(m["images_per_second"] * m["epoch_seconds"] for _, _, m in (entries[k] for k in inside))
    seconds = entries[inside[-1]][0] - entries[inside[0] - 1][0]
    return {"epochs": len(inside), "steps": statistics.median(entries[k][2]["images_per_second"] for k in inside),
            "wall": faces / seconds if seconds > 0 else None}  # fmt: skip


def summarise_level(folder: Path) -> dict:
    """One table row for a level folder written by `gpu_check_train.run_level`."""
    level = json.loads((folder / "level.json").read_text())
    n, row = level["processes"], {"processes": level["processes"], "ok": False, "note": ""}
    if level["warm"] is None:
        row["note"] = "not every trainer finished an epoch within the budget; see the p*.log tails"
        return row
    window = (level["warm"], level["stop"])
    rates = [trainer_rates(parse_log(folder / f"p{i}.log"), window) for i in range(n)]
    crashed = [i for i, code in enumerate(level["exit_before_stop"]) if code is not None]
    usable = [r for r in rates if r is not None]
    samples = [s for s in read_samples(folder / "smi.csv") if window[0] <= s[0] <= window[1]]
    walls = [r["wall"] for r in usable if r["wall"] is not None]
    row.update(
        epochs=sum(r["epochs"] for r in usable),
        img_s_steps=sum(r["steps"] for r in usable) if usable else None,
        img_s_wall=sum(walls) if walls else None,
        per_trainer_img_s_wall=statistics.mean(walls) if walls else None,
        util_mean=statistics.mean(s[1] for s in samples) if samples else None,
        util_min=min(s[1] for s in samples) if samples else None,
        mem_max_mib=max(s[2] for s in samples) if samples else None,
        samples=len(samples),
        steady_s=window[1] - window[0],
    )
    notes = []
    if crashed:
        notes.append(f"trainer(s) {crashed} ended before the stop")
    if len(usable) < n:
        notes.append(f"{n - len(usable)} trainer(s) without an epoch in the steady window")
    row["ok"] = not notes
    row["note"] = "; ".join(notes)
    return row


def summarise_runs(out: Path) -> list[dict]:
    """The rows of every ``n<k>`` level folder under `out`, by k, with throughput relative to one trainer."""
    folders = sorted((f for f in Path(out).glob("n*") if (f / "level.json").exists()), key=lambda f: int(f.name[1:]))
    rows = [summarise_level(f) for f in folders]
    one = next((r.get("img_s_wall") for r in rows if r["processes"] == 1), None)
    for row in rows:
        row["vs_one"] = row["img_s_wall"] / one if one and row.get("img_s_wall") else None
    return rows


def _fmt(value, spec: str = ".1f") -> str:
    if value is None or value == "":
        return "n/a"
    return format(value, spec) if isinstance(value, float) else str(value)


def write_tables(rows: list[dict], out: Path, title: str) -> str:
    """Write ``table.csv`` and ``table.md`` into `out`; return the markdown."""
    with (Path(out) / "table.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, TABLE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"{title}: concurrent trainers on one device",
             "", "| trainers | img/s steps | img/s wall | per trainer | vs 1 | GPU util mean / min % | "
             "GPU mem max MiB | epochs | steady s | note |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        cells = [r["processes"], _fmt(r.get("img_s_steps")), _fmt(r.get("img_s_wall")),
                 _fmt(r.get("per_trainer_img_s_wall")), _fmt(r.get("vs_one"), ".2f"),
                 f"{_fmt(r.get('util_mean'), '.0f')} / {_fmt(r.get('util_min'), '.0f')}",
                 _fmt(r.get("mem_max_mib"), ".0f"), _fmt(r.get("epochs")), _fmt(r.get("steady_s"), ".0f"),
                 r["note"] or ("ok" if r["ok"] else "")]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    text = "\n".join(lines)
    (Path(out) / "table.md").write_text(text + "\n")
    return text


# ------------------------------------------------------------------------------------------------- benchmark
def merge_bench(eager: Path, compiled: Path | None, out: Path) -> int:
    """One CSV of the benchmark's runs: every row of the eager run (fp32 and fast without compile), then the
    compiled run's fast rows relabelled `BENCH_COMPILED` (its fp32 rows repeat the eager run's and are dropped
    unless the eager run lacks them). Returns the number of rows."""
    from bench.rows import read_csv, write_csv

    rows = read_csv(eager) if eager.exists() else []
    have = {(r.model, r.scale, r.path) for r in rows if not r.error}
    for row in read_csv(compiled) if compiled is not None and compiled.exists() else []:
        if row.path == "fast":
            row.path = BENCH_COMPILED
            rows.append(row)
        elif (row.model, row.scale, row.path) not in have:
            rows.append(row)
    write_csv(rows, out)
    return len(rows)


def _train_rate(row) -> float | None:
    return None if row is None or row.error else row.train_images_s


def compile_table(csv_path: Path) -> str:
    """Train images/s of fp32 eager, fast eager and fast compiled side by side, for the models that were compiled."""
    from bench.rows import read_csv

    rows = read_csv(csv_path)
    by_key: dict[tuple[str, int], dict[str, object]] = {}
    for row in rows:
        by_key.setdefault((row.model, row.scale), {})[row.path] = row
    lines = ["| model | x | train img/s fp32 | fast | fast + compile | fast / fp32 | compiled / fp32 | "
             "MFU compiled |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (model, scale), paths in by_key.items():
        if BENCH_COMPILED not in paths:
            continue
        plain, fast, compiled = (_train_rate(paths.get(p)) for p in ("fp32", "fast", BENCH_COMPILED))
        ratio = [b / plain if plain and b else None for b in (fast, compiled)]
        mfu = paths[BENCH_COMPILED].train_mfu if not paths[BENCH_COMPILED].error else None
        note = f" ({paths[BENCH_COMPILED].error[:80]})" if paths[BENCH_COMPILED].error else ""
        lines.append(f"| {model} | {scale} | {_fmt(plain, '.1f')} | {_fmt(fast, '.1f')} | {_fmt(compiled, '.1f')}"
                     f"{note} | {_fmt(ratio[0], '.2f')} | {_fmt(ratio[1], '.2f')} | {_fmt(mfu, '.3f')} |")  # fmt: skip
    return "\n".join(lines)


def auto_fractions(csv_path: Path) -> str:
    """What `auto_gpu_fraction` (sweeps' --gpus-per-trial auto) picks from this CSV for each model and scale.

    It reads the device this process sees, so it says something only when run on the GPU that was measured."""
    import torch

    from bench.rows import read_csv
    from sweeps.resources import auto_gpu_fraction

    if not torch.cuda.is_available():
        return "no GPU in this process: auto_gpu_fraction returns 1.0 (one trial per GPU) for every model"
    keys = dict.fromkeys((r.model, r.scale) for r in read_csv(csv_path) if r.path == "fast" and not r.error)
    return "\n".join(f"- {m} x{s}: {auto_gpu_fraction(m, s, csv_path):.3f}" for m, s in keys)


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.strip() or '(nothing: see the step log)'}\n"


def _read(path: Path, limit: int = 6000) -> str:
    return path.read_text(errors="replace")[-limit:] if path.exists() else ""


def report(out: Path) -> str:
    """``summary.md`` of a finished (or partly finished) check folder; returns its text."""
    from bench.rows import format_table, read_csv

    parts = [f"# GPU check, {out}\n"]
    parts.append(_section("Steps (name, exit code, seconds, budget)", "```\n" + _read(out / "steps.tsv") + "```"))
    parts.append(_section("Environment", "```\n" + _read(out / "env.txt") + "```"))
    merged = out / "bench_gpu.csv"
    if merged.exists():
        table = format_table([r for r in read_csv(merged) if r.path in ("fp32", "fast")])
        parts.append(_section("Benchmark: fp32 eager | fast (bf16 + channels-last + fused Adam, no compile)",
                              "```\n" + table + "\n```"))  # fmt: skip
        parts.append(_section("torch.compile", compile_table(merged)))
        parts.append(_section("--gpus-per-trial auto from this table", auto_fractions(merged)))
    projection = "```\n" + _read(out / "project.log") + "```"
    parts.append(_section("Projection (GPU-hours at the paper's schedule)", projection))
    for name, title in (("pack", "Packing: the synthetic LLV-FSR trial"), ("paper", "LLV-FSR x8 at the paper's size")):
        table = out / name / "table.md"
        parts.append(_section(title, table.read_text() if table.exists() else ""))
    text = "\n".join(parts)
    (out / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check_summary.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs", help="the table of a training run's levels")
    runs.add_argument("folder")
    runs.add_argument("--title", default="run")
    merge = sub.add_parser("merge-bench", help="merge the eager and compiled benchmark CSVs")
    merge.add_argument("eager")
    merge.add_argument("compiled", nargs="?")
    merge.add_argument("-o", "--out", required=True)
    rep = sub.add_parser("report", help="write summary.md of a check folder")
    rep.add_argument("folder")
    args = p.parse_args(argv)
    if args.command == "runs":
        folder = Path(args.folder)
        if not folder.is_dir():
            p.error(f"{folder}: no such folder")
        print(write_tables(summarise_runs(folder), folder, args.title))
    elif args.command == "merge-bench":
        if not Path(args.eager).exists() and not (args.compiled and Path(args.compiled).exists()):
            p.error(f"{args.eager}: no benchmark CSV to merge")
        count = merge_bench(Path(args.eager), Path(args.compiled) if args.compiled else None, Path(args.out))
        print(f"{count} rows -> {args.out}")
    else:
        folder = Path(args.folder)
        if not folder.is_dir():
            p.error(f"{folder}: no such folder")
        report(folder)
        print(f"wrote {folder / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())

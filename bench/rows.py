"""Benchmark results: one row per (model, scale, path), their CSV file, and the tables printed from them."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass
class BenchRow:
    """One (model, scale, path) measurement; a row with `error` set failed and holds only what was known."""

    model: str
    scale: int
    path: str  # "fp32", "fast", or "count" (--count-only: no timing)
    device: str  # the device's name, e.g. "NVIDIA H100 80GB HBM3" or "cpu (2 threads)"
    hr_size: int
    batch: int
    params: int | None = None  # trainable + frozen parameters
    gflops_forward: float | None = None  # per image, inference forward
    gflops_train: float | None = None  # per image, forward + backward of one train step
    train_images_s: float | None = None
    infer_images_s: float | None = None
    train_peak_mib: float | None = None  # see `MemoryMeter`
    infer_peak_mib: float | None = None
    train_tflops: float | None = None  # achieved: gflops_train x images/s
    infer_tflops: float | None = None
    train_mfu: float | None = None  # achieved / the device's dense bf16 peak (n/a for unknown devices and the CPU)
    infer_mfu: float | None = None
    device_memory_mib: float | None = None  # total memory of the device (GPU only)
    error: str = ""

    @staticmethod
    def from_csv(record: dict[str, str]) -> BenchRow:
        values = {}
        for f in fields(BenchRow):
            raw = record.get(f.name, "")
            if f.type in ("str",):
                values[f.name] = raw
            elif raw == "":
                values[f.name] = None
            else:
                values[f.name] = int(raw) if f.type.startswith("int") else float(raw)
        return BenchRow(**values)


CSV_FIELDS = [f.name for f in fields(BenchRow)]


def write_csv(rows: list[BenchRow], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in dataclasses.asdict(row).items()})


def read_csv(path: str | Path) -> list[BenchRow]:
    with Path(path).open(newline="") as handle:
        return [BenchRow.from_csv(record) for record in csv.DictReader(handle)]


def fmt(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or "n/a"."""
    return "n/a" if value is None else format(value, spec)


def _cell(row: BenchRow | None, attr: str, spec: str) -> str:
    return "-" if row is None or row.error else fmt(getattr(row, attr), spec)


def format_counts(rows: list[BenchRow]) -> str:
    """Parameters and per-image GFLOPs, one line per model and scale (`python -m bench --count-only`)."""
    size = rows[0].hr_size if rows else 256
    lines = [
        f"{'model':22s} {'x':>3s} {'params M':>9s} {'GFLOPs fwd':>10s} {'GFLOPs train':>12s}  (HR {size}, per image)"
    ]
    for row in rows:
        if row.error:
            lines.append(f"{row.model:22s} {row.scale:3d} error: {row.error}")
            continue
        params = fmt(row.params / 1e6 if row.params is not None else None, ".3f")
        lines.append(f"{row.model:22s} {row.scale:3d} {params:>9s} {fmt(row.gflops_forward, '.2f'):>10s} "
                     f"{fmt(row.gflops_train, '.2f'):>12s}")  # fmt: skip
    return "\n".join(lines)


def format_table(rows: list[BenchRow]) -> str:
    """One line per model and scale with the fp32 and fast paths side by side ("fp32|fast"), then the errors."""
    by_key: dict[tuple[str, int], dict[str, BenchRow]] = {}
    for row in rows:
        by_key.setdefault((row.model, row.scale), {})[row.path] = row
    header = (f"{'model':22s} {'x':>3s} {'params M':>8s} {'GF fwd':>8s} {'GF train':>8s} "
              f"{'train img/s fp32|fast':>22s} {'speedup':>7s} {'infer img/s fp32|fast':>22s} "
              f"{'train peak MiB fp32|fast':>25s} "
              f"{'TFLOP/s fast':>12s} {'MFU fast':>8s}")  # fmt: skip
    lines, errors = [header, "-" * len(header)], []
    for (model, scale), paths in by_key.items():
        plain, fast = paths.get("fp32"), paths.get("fast")
        errors += [f"  {model} x{scale} {r.path}: {r.error}" for r in (plain, fast) if r is not None and r.error]
        ok = next((r for r in (plain, fast) if r is not None and not r.error), None)
        params = ok.params / 1e6 if ok is not None and ok.params is not None else None
        speedup = None
        if ok is plain and fast is not None and not fast.error and plain.train_images_s and fast.train_images_s:
            speedup = fast.train_images_s / plain.train_images_s
        lines.append(
            f"{model:22s} {scale:3d} {fmt(params, '.3f'):>8s} {_cell(ok, 'gflops_forward', '.2f'):>8s} "
            f"{_cell(ok, 'gflops_train', '.2f'):>8s} "
            f"{_cell(plain, 'train_images_s', '.2f') + '|' + _cell(fast, 'train_images_s', '.2f'):>22s} "
            f"{fmt(speedup, '.2f'):>7s} "
            f"{_cell(plain, 'infer_images_s', '.2f') + '|' + _cell(fast, 'infer_images_s', '.2f'):>22s} "
            f"{_cell(plain, 'train_peak_mib', '.0f') + '|' + _cell(fast, 'train_peak_mib', '.0f'):>25s} "
            f"{_cell(fast, 'train_tflops', '.3f'):>12s} {_cell(fast, 'train_mfu', '.3f'):>8s}"
        )  # fmt: skip
    if errors:
        lines += ["", "errors:", *errors]
    return "\n".join(lines)

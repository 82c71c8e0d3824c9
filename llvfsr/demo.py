"""`make demo`: the whole pipeline on the built-in synthetic faces, on a CPU, in minutes.

1. render synthetic faces, degrade them (x8, x16) and print the bicubic row of Table 1 under the paper's metric
   convention (LPIPS only when its AlexNet trunk is available offline);
2. run the `ablation` grid through Ray Tune into ./mlflow.db (`python sweeps/run.py --grid ablation`);
3. print Table 2 and the per-prior ablation from MLflow (`python analysis/tables.py`).
"""

from __future__ import annotations

import argparse
import sys

import torch

from llvfsr.data.degrade import degrade_bicubic, upsample_bicubic
from llvfsr.metrics import Evaluator


def bicubic_table(n: int = 64, hr_size: int = 256) -> str:
    """Bicubic PSNR / SSIM / NIQE (/ LPIPS) on `n` synthetic test faces, per scale, as a markdown table."""
    from llvfsr.data.datasets import open_dataset

    faces = open_dataset("synthetic", "test", n=n, hr_size=hr_size)
    hr = torch.from_numpy(faces.load_hr_batch(list(range(n)))).permute(0, 3, 1, 2).float() / 255
    lines = ["| scale | LR size | PSNR (Y) | SSIM (Y) | NIQE | LPIPS |", "|---|---|---|---|---|---|"]
    for scale in (8, 16):
        lr = (degrade_bicubic(hr, scale).clamp(0, 1) * 255).round() / 255
        sr = upsample_bicubic(lr, scale).clamp(0, 1)
        evaluator = Evaluator(convention="paper", scale=scale)
        values = evaluator(sr, hr)
        cell = {k: f"{v.mean():.4f}" for k, v in values.items()}
        lpips = cell.get("lpips", "n/a (no AlexNet trunk offline)")
        lines.append(
            f"| x{scale} | {lr.shape[-1]}x{lr.shape[-2]} | {cell['psnr']} | {cell['ssim']} | "
            f"{cell.get('niqe', 'n/a')} | {lpips} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-sweep", action="store_true", help="only the bicubic table")
    args = parser.parse_args(argv)
    print("== 1. bicubic baseline on 64 synthetic 256x256 faces (paper convention: Y, crop 8)")
    print(bicubic_table())
    if args.skip_sweep:
        return 0
    from analysis.tables import main as tables_main
    from sweeps.run import main as sweep_main

    print("\n== 2. python sweeps/run.py --grid ablation   (Ray Tune -> MLflow, synthetic faces, short CPU schedule)")
    code = sweep_main(["--grid", "ablation", "--resume"])
    if code != 0:
        return code
    print("\n== 3. python analysis/tables.py --grid ablation")
    return tables_main(["--grid", "ablation"])


if __name__ == "__main__":
    sys.exit(main())

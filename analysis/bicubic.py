"""The bicubic row of Table 1 on synthetic faces, under a metric convention: no training, no MLflow, seconds.

    python analysis/bicubic.py              # 64 synthetic 256 px test faces, x8 and x16, the paper's convention

Each face is degraded as the trials degrade it (`llvfsr.data.degrade.make_lr`: antialiased bicubic, 8-bit LR) and
bicubic-upsampled back; LPIPS only when its AlexNet trunk is available offline.
"""

from __future__ import annotations

import argparse
import sys

import torch

from llvfsr.data.degrade import make_lr, upsample_bicubic
from llvfsr.errors import cli_entry
from llvfsr.metrics import Evaluator


def bicubic_table(n: int = 64, hr_size: int = 256, scales: tuple[int, ...] = (8, 16)) -> str:
    """Bicubic PSNR / SSIM / NIQE (/ LPIPS) on `n` synthetic test faces, per scale, as a markdown table."""
    from llvfsr.data.datasets import open_dataset

    faces = open_dataset("synthetic", "test", n=n, hr_size=hr_size)
    hr = torch.from_numpy(faces.load_hr_batch(list(range(n)))).permute(0, 3, 1, 2).float() / 255
    lines = ["| scale | LR size | PSNR (Y) | SSIM (Y) | NIQE | LPIPS |", "|---|---|---|---|---|---|"]
    for scale in scales:
        lr = make_lr(hr, scale)
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


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python analysis/bicubic.py", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64, help="synthetic test faces (default: 64)")
    p.add_argument("--hr-size", type=int, default=256, help="HR side in pixels (default: 256)")
    p.add_argument("--scales", default="8,16", help="comma-separated up-scaling factors (default: 8,16)")
    args = p.parse_args(argv)
    try:
        scales = tuple(int(s) for s in args.scales.split(","))
    except ValueError:
        p.error(f"--scales must be comma-separated integers, got {args.scales!r}")
    if args.n < 1 or any(s < 1 or args.hr_size % s for s in scales):
        p.error("--n must be positive and every scale must divide --hr-size")
    print(bicubic_table(args.n, args.hr_size, scales))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The positive control of the description in a minute: two trained checkpoints read back on fresh test faces.

    python analysis/positive_control.py              # the checkpoints shipped in llvfsr/assets/control
    python analysis/positive_control.py --checkpoints DIR --n 256

The `controls` grid trains LLV-FSR with and without the description on faces whose iris colour only the
description states (the `control` preset, ~11 min per trial on 2 CPU cores), which is too long for `make demo`.
This reads two such checkpoints (seed 0 of the sweep `controls-checker`, README "Controls"; their weights are
stored in half precision, about 2 MB each) on the first `--n` test faces: how often the SR face shows its true iris
colour (matched reader, chance 0.20), and how often it shows the colour a description edited to state the next
colour says instead (the hallucination rate). Retrain them with `python sweeps/run.py --grid controls --only
llvfsr,llvfsr-wo-description`; the checkpoints' `checkpoint.pt` work here as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from llvfsr.errors import UsageError, cli_entry

ASSETS = Path(__file__).resolve().parents[1] / "llvfsr" / "assets" / "control"
MODELS = ("llvfsr", "llvfsr-wo-description")  # file stems in --checkpoints
EDIT = "description:eye-colour"  # the description states the next colour


def read_back(checkpoint: Path, n: int, priors_root: Path) -> dict[str, float]:
    """Matched iris accuracy of one checkpoint on the first `n` test faces of its split, and, when it reads the
    description, the share of faces showing the colour an edited description states."""
    from llvfsr.config import resolve_train
    from llvfsr.counterfactual import counterfactuals, hallucination_rates
    from llvfsr.evaluate import evaluate_split
    from llvfsr.models.from_config import required_fields
    from llvfsr.priors.ensure import ensure_priors
    from llvfsr.priors.types import PRIOR_KINDS
    from llvfsr.sr import load_trained
    from llvfsr.trial_data import load_split

    config, model = load_trained(checkpoint)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, test_n=n, priors_root=str(priors_root)))
    fields = required_fields(model, config.model.name)
    ensure_priors(config.data, fields & set(PRIOR_KINDS), splits=("test",))
    data = load_split(config.data, "test", fields, torch.device("cpu"))
    tcfg = dataclasses.replace(resolve_train(config.train, config.model.name), lpips=False, niqe=False)

    def evaluate(split) -> tuple[dict[str, float], pd.DataFrame]:  # the trials' own evaluation, per-face CSV read back
        with tempfile.TemporaryDirectory() as folder:
            summary = evaluate_split(model, split, config, tcfg, Path(folder))
            return summary, pd.read_csv(Path(folder) / "per_image.csv")

    summary, _ = evaluate(data)
    out = {"matched_acc": summary["test_attr_eye_colour_matched_acc"]}
    if "description" in fields:
        (edit,) = counterfactuals(data, config.data, [EDIT])
        _, frame = evaluate(edit.data)
        out["shows_edited_colour"] = hallucination_rates(frame, edit.stated)["hallucination_eye_colour_matched"]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", type=Path, default=ASSETS, help=f"folder with {' and '.join(MODELS)} .pt files")
    p.add_argument("--n", type=int, default=64, help="test faces to read (default 64)")
    p.add_argument("--priors-root", type=Path, default=Path("priors_cache"), help="where the test priors are kept")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    return args


@cli_entry()
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = [args.checkpoints / f"{name}.pt" for name in MODELS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"--checkpoints {args.checkpoints}: missing {', '.join(missing)}")
    print(f"Iris colour read back from the SR faces of {args.n} test faces (matched reader; chance 0.20):\n")
    print("| model | shows its true colour | shows the colour an edited description states |")
    print("|---|---|---|")
    for name, path in zip(MODELS, paths, strict=True):
        result = read_back(path, args.n, args.priors_root)
        edited = result.get("shows_edited_colour")
        print(f"| {name} | {result['matched_acc']:.2f} | {'—' if edited is None else f'{edited:.2f}'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

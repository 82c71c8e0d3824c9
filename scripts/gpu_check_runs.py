"""The training runs of the GPU check (issue 17), as `python -m llvfsr.train` flags, and their prior stores.

The GPU machine has no open_clip, and the synthetic presets embed their texts with a random tiny open_clip text
tower. So the prior stores of these runs are extracted here, on the CPU, into `STORE_ROOT`, and travel with the
working tree (``carry: ["priors_cache/gpu-check"]``); on the GPU machine every store is complete, so
`llvfsr.priors.ensure.ensure_priors` builds no text encoder and nothing imports open_clip.

Runs (one model each, LLV-FSR x8):
    pack: the synthetic sweep's LLV-FSR trial (`sweeps.presets.PRESETS["synthetic"]`: HR 64, 3 blocks of width 24,
        352 faces, batch 16), run as 1, 2, 4 and 8 processes at once to measure packing.
    paper: LLV-FSR at the paper's size (HR 256, the registry's full model, batch 16) on 384 synthetic faces.
Each exists in a ``--tiny`` form on the smoke preset's sizes for the CPU rehearsal.

    python scripts/gpu_check_runs.py flags pack [--tiny]     # the train flags, one per line (for reading)
    python scripts/gpu_check_runs.py prepare                 # extract every run's priors (here, with open_clip)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file from the repository root without installing the package
    sys.path.insert(0, str(REPO))

from sweeps.presets import PRESETS  # noqa: E402

STORE_ROOT = "priors_cache/gpu-check"  # relative to the repository root, where the check runs
TEXT = ["--text-encoder", "tiny", "--allow-random-text-encoder"]  # the presets' random tiny CLIP text tower
# Training runs until the check stops it; no test evaluation, so no LPIPS / NIQE weights are needed.
ENDLESS = ["--epochs", "100000", "--no-lpips", "--no-niqe"]


def _preset_flags(preset: str) -> list[str]:
    """The data, batch and LLV-FSR size flags of a sweep preset (`sweeps.presets`)."""
    data, train = PRESETS[preset].data, PRESETS[preset].train
    flags = ["--dataset", "synthetic", "--hr-size", str(data.hr_size), "--train-n", str(data.train_n),
             "--val-n", str(data.val_n), "--test-n", str(data.test_n),
             "--batch-size", str(train.batch_size)]  # fmt: skip
    for key, value in PRESETS[preset].overrides_for("llvfsr"):
        flags += ["--set", f"{key}={value}"]
    return flags


# 384 faces: rendering them at 256 px costs the trainer ~20 s of start-up on the GPU machine, and their stores ~25 MB
# of the 64 MiB that travels with the working tree.
PAPER = ["--dataset", "synthetic", "--hr-size", "256", "--train-n", "384", "--val-n", "32", "--test-n", "16",
         "--batch-size", "16", "--val-every", "5"]  # fmt: skip

RUNS: dict[str, list[str]] = {
    "pack": _preset_flags("synthetic"),
    "paper": PAPER,
    "pack-tiny": _preset_flags("smoke"),
    "paper-tiny": _preset_flags("smoke"),
}


def run_flags(name: str, priors_root: str = STORE_ROOT) -> list[str]:
    """All `python -m llvfsr.train` flags of run `name` but --device, --out and the speed switches."""
    return ["--model", "llvfsr", "--scale", "8", *RUNS[name], *TEXT, *ENDLESS, "--priors-root", priors_root]


def prepare(names: list[str], priors_root: str | Path = REPO / STORE_ROOT) -> list[str]:
    """Extract the prior stores of runs `names` under `priors_root`; returns the store folders.

    Needs open_clip (the tiny text tower): run it where the project's venv is, not on the GPU machine.
    """
    from llvfsr.cli import experiment_from_args, experiment_parser
    from llvfsr.models.from_config import build_model, required_fields
    from llvfsr.priors.ensure import ensure_priors, open_store

    parser = experiment_parser("gpu check run")
    folders = []
    for name in names:
        config = experiment_from_args(parser, parser.parse_args(run_flags(name, str(priors_root))))
        data = config.data
        fields = required_fields(build_model(config), config.model.name)
        ensure_priors(data, fields, progress=False)
        folders += [str(open_store(data, split).directory) for split in ("train", "test")]
    return folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check_runs.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    flags = sub.add_parser("flags", help="print a run's train flags, one per line")
    flags.add_argument("run", choices=("pack", "paper"))
    flags.add_argument("--tiny", action="store_true", help="the CPU rehearsal's form of the run")
    prep = sub.add_parser("prepare", help="extract the prior stores of every run (needs open_clip)")
    prep.add_argument("--tiny", action="store_true", help="only the CPU rehearsal's runs")
    for sub_parser in (flags, prep):
        sub_parser.add_argument("--priors-root", default=STORE_ROOT, help=f"store root (default: {STORE_ROOT})")
    args = p.parse_args(argv)
    if args.command == "flags":
        print("\n".join(run_flags(args.run + ("-tiny" if args.tiny else ""), args.priors_root)))
        return 0
    names = [n for n in RUNS if n.endswith("-tiny")] if args.tiny else list(RUNS)
    for folder in prepare(names, args.priors_root):
        print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

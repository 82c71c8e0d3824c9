"""The prior-store CLI: ``python -m llvfsr.priors {extract,status,verify}``.

Examples:
    python -m llvfsr.priors extract --dataset synthetic --split train --n 200 --scale 8 --out priors \\
        --allow-random-text-encoder
    python -m llvfsr.priors status --out priors
    python -m llvfsr.priors verify --out priors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llvfsr.cli import add_source_option_flag, build_source, parse_source_options
from llvfsr.errors import cli_entry
from llvfsr.priors.sources import KINDS, source_names
from llvfsr.priors.store import DEFAULT_SHARD_SIZE, PriorStore, PriorStoreError
from llvfsr.priors.types import TEXT_KINDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llvfsr.priors", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    extract = commands.add_parser("extract", help="compute the missing priors of a dataset split (resumable)")
    extract.add_argument("--dataset", required=True, help="'synthetic' or the folder of the HR faces")
    extract.add_argument("--split", default="train", choices=("train", "val", "test"))
    extract.add_argument(
        "--n", type=int, default=None, help="number of faces (synthetic: default 1000; folder: first n)"
    )
    extract.add_argument("--seed", type=int, default=None, help="synthetic faces: generator seed (default 0)")
    extract.add_argument("--hr-size", type=int, default=256, help="HR side in pixels")
    extract.add_argument("--scale", type=int, required=True, choices=(8, 16), help="LR down-sampling factor")
    extract.add_argument("--out", required=True, type=Path, help="the prior store root")
    for kind in KINDS:
        extract.add_argument(
            f"--{kind}",
            choices=[*source_names(kind), "none"],
            default=None,
            help=f"{kind} source ('none' skips it; default: synthetic for the synthetic dataset)",
        )
    add_source_option_flag(extract)
    extract.add_argument(
        "--text-encoder", default="ViT-B-32", help="open_clip architecture, or 'none' for no embeddings"
    )
    extract.add_argument(
        "--text-pretrained", default="openai", help="open_clip pretrained tag or a local checkpoint file"
    )
    extract.add_argument(
        "--allow-random-text-encoder",
        action="store_true",
        help="use a random-initialised text encoder when no weights are available (recorded)",
    )
    extract.add_argument("--batch-size", type=int, default=None, help="faces per source call (default: per source)")
    extract.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="items per shard of a new store")
    extract.add_argument("--device", default=None, help="device of the models, e.g. cuda or cpu (default: cuda if any)")
    extract.add_argument("--no-progress", action="store_true", help="no progress bar")

    for name, text in (("status", "show what each store under --out holds"),
                       ("verify", "check every shard of every store under --out against its checksum")):  # fmt: skip
        command = commands.add_parser(name, help=text)
        command.add_argument("--out", required=True, type=Path, help="the prior store root (or one store's folder)")
    return parser


def _open_dataset(args: argparse.Namespace) -> Any:
    from llvfsr.data.datasets import open_dataset

    return open_dataset(args.dataset, args.split, n=args.n, seed=args.seed, hr_size=args.hr_size)


def _make_sources(args: argparse.Namespace, device: str | None) -> dict[str, Any]:
    options = parse_source_options(args.source_option)
    names = {kind: getattr(args, kind) or ("synthetic" if args.dataset == "synthetic" else "none") for kind in KINDS}
    return {kind: build_source(kind, name, options.get(kind), device) for kind, name in names.items() if name != "none"}


def _extract(args: argparse.Namespace) -> int:
    import torch

    from llvfsr.priors.extract import extract_priors
    from llvfsr.priors.text_encoder import ClipTextEncoder

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sources = _make_sources(args, device)
    dataset = _open_dataset(args)
    store = PriorStore.open(args.out, dataset, args.split, args.scale, shard_size=args.shard_size)
    if not sources:
        print("nothing to extract: choose at least one source (--mask, --depth, ...)", file=sys.stderr)
        return 2
    encoder = None
    if args.text_encoder != "none" and set(TEXT_KINDS) & set(sources):
        encoder = ClipTextEncoder(args.text_encoder, args.text_pretrained, allow_random=args.allow_random_text_encoder,
                                  device=device)  # fmt: skip
    try:
        computed = extract_priors(
            store, dataset, sources, encoder, batch_size=args.batch_size, progress=not args.no_progress
        )
    finally:
        for source in sources.values():
            source.close()
    print(f"{store.directory}: computed shards {json.dumps(computed)}")
    _print_status(store)
    return 0


def _stores(out: Path) -> list[PriorStore]:
    manifests = [out / "manifest.json"] if (out / "manifest.json").exists() else sorted(out.rglob("manifest.json"))
    if not manifests:
        raise PriorStoreError(f"no prior store under {out}")
    return [PriorStore.at(path.parent) for path in manifests]


def _print_status(store: PriorStore) -> None:
    print(f"{store.directory}: n={store.n} scale=x{store.scale} hr={store.hr_size} shards={store.num_shards}")
    costs = store.costs()
    for field, state in store.status().items():
        cost = costs[field]
        per_image = f"{cost['seconds_per_image'] * 1000:.2f} ms/img" if cost["seconds_per_image"] is not None else "-"
        random = " RANDOM-INIT" if state.get("random_init") else ""
        print(f"  {field:17s} {state['source']!s:15s} {state['shards_done']}/{state['shards']} shards "
              f"{'complete' if state['complete'] else 'INCOMPLETE'}{random}  {per_image}  "
              f"peak RSS {cost['peak_rss_mib'] or 0:.0f} MiB, CUDA {cost['peak_cuda_mib'] or 0:.0f} MiB")  # fmt: skip


@cli_entry(ValueError)
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a damaged or mismatched store or a source that cannot load,
    2 bad usage)."""
    args = build_parser().parse_args(argv)
    if args.command == "extract":
        return _extract(args)
    stores = _stores(args.out)
    if args.command == "status":
        for store in stores:
            _print_status(store)
        return 0
    problems = [problem for store in stores for problem in store.verify(raise_on_error=False)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"verified {len(stores)} store(s): {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

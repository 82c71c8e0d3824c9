"""Load a trial's data once: uint8 HR faces and their priors, resident on the training device.

The design's performance rule: a trial's split is small enough to live on the GPU, so it is loaded once, degraded
on the device and indexed there; the data pipeline never stalls the step. Prior stores are produced ahead of the
trials (`llvfsr.priors.ensure.ensure_priors`, called by the sweep driver and the single-run CLI) and only read here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from llvfsr.config import DataConfig
from llvfsr.data.splits import open_split
from llvfsr.priors.types import PRIOR_KINDS, Priors

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """One split in memory: ids, HR faces (uint8 [N,3,H,W]) and priors (any subset of fields)."""

    ids: list[str]
    hr: Tensor
    priors: Priors

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: Tensor) -> tuple[Tensor, Priors]:
        """HR float [B,3,H,W] in [0,1] and the matching priors (mask long, the rest float32) on the data's device."""
        priors = self.priors.select(index).map(
            lambda t: t if t.dtype in (torch.bool, torch.float32) else t.long() if t.dtype == torch.uint8 else t.float()
        )
        return self.hr[index].float().div_(255.0), priors

    def subset(self, index: Tensor) -> SplitData:
        return SplitData([self.ids[i] for i in index.tolist()], self.hr[index], self.priors.select(index))


def load_split(data: DataConfig, split: str, fields: set[str], device: torch.device) -> SplitData:
    """Load a split's HR faces and the requested prior fields onto `device` (priors must already be extracted)."""
    dataset = open_split(data, split)
    hr = np.ascontiguousarray(dataset.load_hr_batch(list(range(len(dataset)))).transpose(0, 3, 1, 2))
    priors = Priors()
    if fields:
        from llvfsr.priors.ensure import check_sources
        from llvfsr.priors.store import PriorStore

        store = PriorStore.open(data.priors_root, dataset, split, data.scale)
        check_sources(store, data, {kind for kind in fields if kind in PRIOR_KINDS})
        priors = store.load(set(fields), compact=True)  # uint8 masks, float16 depth/text: 4-8x less memory
    ids = [dataset.item_id(i) for i in range(len(dataset))]
    log.info("loaded %s split: %d faces, priors %s", split, len(ids), sorted(fields))
    return SplitData(ids, torch.from_numpy(hr).to(device), priors.to(device))

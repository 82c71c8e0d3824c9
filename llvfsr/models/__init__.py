"""Every super-resolution model of the project, built by name.

Contract (all models): ``model = build(name, scale=8, **overrides)`` returns an ``nn.Module`` with
``forward(lr: Tensor[B,3,h,w], priors: Priors | None = None) -> Tensor[B,3,h*scale,w*scale]`` on float RGB
in [0, 1]. A model that works on a bicubic-upsampled input upsamples inside itself.

Auxiliary outputs (the side channel): a model with auxiliary heads (FSRNet's landmark/parsing estimator,
DIC's landmark estimator) keeps the outputs of its last forward in ``model.aux`` (a dict of tensors, e.g.
``aux["heatmaps"]``: [B, 68, H', W']) and defines ``auxiliary_loss(hr, priors) -> Tensor``, a scalar that the
train loop adds to its pixel loss. The targets it reads are the entry's ``targets`` fields of `Priors`.
"""

from types import MappingProxyType as _Frozen

from llvfsr.models.registry import ModelEntry, build, get_entry, list_models, register
from llvfsr.priors.types import PRIOR_KINDS

ALL_PRIORS = frozenset(PRIOR_KINDS)

register(
    ModelEntry(
        "llvfsr",
        "llvfsr.models.llvfsr:build_llvfsr",
        "LLV-FSR, all four priors (LVPFB)",
        priors=ALL_PRIORS,
        paper_name="LLV-FSR",
    )
)
register(
    ModelEntry(
        "llvfsr-model1",
        "llvfsr.models.llvfsr:build_model1",
        "Table 2 Model 1: no LVPFB, no priors",
        paper_name="Model 1",
    )
)
register(
    ModelEntry(
        "llvfsr-model2",
        "llvfsr.models.llvfsr:build_model2",
        "Table 2 Model 2: priors fused by concatenation + conv",
        priors=ALL_PRIORS,
        paper_name="Model 2",
    )
)
for _prior in PRIOR_KINDS:
    register(
        ModelEntry(
            f"llvfsr-wo-{_prior}",
            f"llvfsr.models.llvfsr:build_wo_{_prior}",
            f"LLV-FSR without the {_prior} branch and input (Fig. 9)",
            priors=ALL_PRIORS - {_prior},
            paper_name=f"w/o {_prior}",
        )
    )

register(
    ModelEntry(
        "bicubic",
        "llvfsr.models.bicubic:build_bicubic",
        "bicubic up-sampling (evaluated, not trained)",
        trained=False,
        paper_name="Bicubic",
    )
)

# Baselines of Table 1 (paper Sec. 4.3). train_defaults hold each paper's own optimiser and loss settings.
register(
    ModelEntry(
        "srcnn",
        "baselines.srcnn:build",
        "SRCNN (Dong et al., TPAMI 2016)",
        paper_name="SRCNN",
        train_defaults=_Frozen({"loss": "l2", "lr": 1e-4}),
    )
)
register(
    ModelEntry(
        "fsrnet",
        "baselines.fsrnet:build",
        "FSRNet (Chen et al., CVPR 2018)",
        targets=frozenset({"mask", "landmarks"}),
        paper_name="FSRNet",
        train_defaults=_Frozen({"loss": "l2", "lr": 2.5e-4}),
    )
)
register(
    ModelEntry(
        "dic",
        "baselines.dic:build",
        "DIC (Ma et al., CVPR 2020)",
        targets=frozenset({"landmarks"}),
        paper_name="DIC",
        train_defaults=_Frozen({"loss": "l1", "lr": 1e-4, "betas": (0.9, 0.999)}),
    )
)
register(
    ModelEntry(
        "sisn",
        "baselines.sisn:build",
        "SISN (Lu et al., ACM MM 2021)",
        paper_name="SISN",
        train_defaults=_Frozen({"loss": "l1", "lr": 2e-4, "betas": (0.9, 0.999)}),
    )
)
register(
    ModelEntry(
        "faceformer",
        "baselines.faceformer:build",
        "FaceFormer (Wang et al., TCSVT 2023)",
        paper_name="FaceFormer",
        train_defaults=_Frozen({"loss": "l1", "lr": 2e-4, "betas": (0.9, 0.999)}),
    )
)
register(
    ModelEntry(
        "sfmnet",
        "baselines.sfmnet:build",
        "SFMNet (Wang et al., CVPR 2023)",
        paper_name="SFMNet",
        train_defaults=_Frozen({"loss": "l1", "lr": 1e-4, "betas": (0.9, 0.99)}),
    )
)
register(
    ModelEntry(
        "wfen",
        "baselines.wfen:build",
        "WFEN (Li et al., ACM MM 2024)",
        paper_name="WFEN",
        train_defaults=_Frozen({"loss": "l1", "lr": 2e-4, "betas": (0.9, 0.99)}),
    )
)

__all__ = ["ALL_PRIORS", "ModelEntry", "build", "get_entry", "list_models", "register"]

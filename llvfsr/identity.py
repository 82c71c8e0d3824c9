"""Identity distance between SR and HR faces: cosine distance of DeepFace embeddings (paper Fig. 7).

DeepFace builds its recognition models in its constructors and downloads their weights from GitHub or Hugging
Face at that moment. Here the model object is built by DeepFace's own code on its PyTorch backend (no
TensorFlow needed), with the weights taken from a local file when one is given; the download hook is bypassed
only for the duration of the construction. Faces go through DeepFace's own ``represent`` preprocessing with
``detector_backend="skip"`` (the test faces are already aligned crops, and a detector may miss a poor SR face):
RGB -> BGR, ``preprocessing.resize_image`` to the model's input (aspect-preserving, black padding, [0, 1]) and
``preprocessing.normalize_input``. The distance is DeepFace's ``find_cosine_distance``.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import Tensor

from llvfsr.data.degrade import to_uint8

log = logging.getLogger(__name__)


def _pytorch_client_class(model_name: str) -> type:
    """DeepFace's PyTorch implementation of a recognition model, whatever backend DeepFace would pick."""
    from deepface.commons.backend_utils import PYTORCH
    from deepface.modules import modeling

    sources = modeling.AVAILABLE_MODELS["facial_recognition"]
    if model_name not in sources or PYTORCH not in sources[model_name]:
        usable = sorted(name for name, impls in sources.items() if PYTORCH in impls)
        raise ValueError(f"DeepFace model {model_name!r} has no PyTorch implementation; use one of {usable}")
    module_path, _, class_name = sources[model_name][PYTORCH].rpartition(".")
    return getattr(importlib.import_module(module_path), class_name)


def build_deepface_model(model_name: str, weights_path: str | Path | None, allow_random: bool) -> Any:
    """Build a DeepFace recognition client (``FacialRecognition``) without any download.

    Args:
        model_name: a DeepFace model name with a PyTorch implementation ("ArcFace", "Facenet512", "VGG-Face", ...).
        weights_path: DeepFace's PyTorch weight file for that model (e.g. ``arcface_weights.pth``), loaded by
            DeepFace's own loader (strict). ``None`` (and not ``allow_random``): DeepFace's usual resolution, its
            cache ``$DEEPFACE_HOME/.deepface/weights/`` or else a download.
        allow_random: tests only: when no ``weights_path`` is given, random weights, never a download.
    """
    client_class = _pytorch_client_class(model_name)
    module = importlib.import_module(client_class.__module__)
    with ExitStack() as stack:
        if weights_path is not None:
            path = Path(weights_path)
            if not path.is_file():
                raise FileNotFoundError(f"DeepFace weights for {model_name} not found: {path}")
            # The constructor asks weight_utils for the file (downloading it if absent); answer with ours.
            stack.enter_context(
                mock.patch.object(module.weight_utils, "download_weights_if_necessary", return_value=str(path))
            )
        elif allow_random:
            stack.enter_context(
                mock.patch.object(module.weight_utils, "download_weights_if_necessary", return_value="<random init>")
            )
            stack.enter_context(
                mock.patch.object(module, "load_model_weights", side_effect=lambda model, weight_file: model.eval())
            )
            log.warning("DeepFace %s with RANDOM weights: identity distances are meaningless (tests only)", model_name)
        try:
            return client_class()
        except ValueError as err:  # DeepFace's download failure (offline) or a corrupt file
            source = getattr(module, "WEIGHTS_URL", f"the URLs in {module.__name__}")
            raise RuntimeError(
                f"Could not load DeepFace {model_name} weights ({err}). Download {source} on a machine with network "
                f"access and pass weights_path=PATH (or put the file in $DEEPFACE_HOME/.deepface/weights/)."
            ) from err


class IdentityDistance:
    """Cosine distance between the DeepFace embeddings of SR and HR faces, per image (0 = same embedding).

    Args:
        model_name: DeepFace recognition model; ArcFace by default.
        weights_path: local DeepFace PyTorch weight file of that model (see `build_deepface_model`).
        allow_random: tests only: random weights when none are available.
        device: where the network runs (default: DeepFace's choice, the first GPU if any).
        normalization: DeepFace's input normalisation; ``"base"`` (pixels in [0, 1]) is DeepFace's default.
    """

    def __init__(
        self,
        model_name: str = "ArcFace",
        weights_path: str | Path | None = None,
        allow_random: bool = False,
        device: str | torch.device | None = None,
        normalization: str = "base",
    ) -> None:
        self.model_name = model_name
        self.normalization = normalization
        self.client = build_deepface_model(model_name, weights_path, allow_random)
        if device is not None:
            self.client.device = torch.device(device)
            self.client.model.to(self.client.device)

    def embed(self, faces: Tensor) -> np.ndarray:
        """DeepFace embeddings of aligned faces.

        Args:
            faces: float [B, 3, H, W] RGB in [0, 1]; rounded to uint8 first, as DeepFace reads image files.

        Returns:
            float64 [B, D] (D = 512 for ArcFace), not normalised.
        """
        from deepface.modules import preprocessing

        if faces.ndim != 4 or faces.shape[1] != 3:
            raise ValueError(f"expected a float [B, 3, H, W] RGB batch, got shape {tuple(faces.shape)}")
        rgb = to_uint8(faces.detach(), channels_last=True).cpu().numpy()
        # DeepFace.represent passes the model's input_shape swapped (its comment: "thanks to DeepId"); so do we.
        target_size = (self.client.input_shape[1], self.client.input_shape[0])
        batch = []
        for img in rgb:
            x = preprocessing.resize_image(img=img[:, :, ::-1], target_size=target_size)  # RGB -> BGR as DeepFace
            batch.append(preprocessing.normalize_input(img=x, normalization=self.normalization))
        embeddings = self.client.forward(np.concatenate(batch, axis=0))
        return np.asarray(embeddings, dtype=np.float64).reshape(len(batch), -1)

    def __call__(self, sr: Tensor, hr: Tensor) -> np.ndarray:
        """Identity distance per image.

        Args:
            sr: float [B, 3, H, W] RGB in [0, 1], the super-resolved faces.
            hr: float [B, 3, H, W] RGB in [0, 1], the ground-truth faces.

        Returns:
            float64 [B] in [0, 2]: 1 - cosine similarity of the two embeddings.
        """
        from deepface.modules.verification import find_cosine_distance

        if sr.shape != hr.shape:
            raise ValueError(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} shapes differ")
        # Pair by pair: on 2-D input find_cosine_distance returns the all-pairs matrix, not the per-pair values.
        pairs = zip(self.embed(sr), self.embed(hr), strict=True)
        distance = np.array([find_cosine_distance(a, b) for a, b in pairs], dtype=np.float64)
        return distance.clip(0.0, 2.0)  # 1 - cos can leave [0, 2] by a rounding error (-2e-16 for x vs x)

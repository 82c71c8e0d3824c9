"""Face data: synthetic faces with exact priors, real face folders, the bicubic degradation, preparation tools.

The names below are imported on first use, so ``import llvfsr.data.degrade`` does not load the renderer.
"""

from importlib import import_module

_EXPORTS = {
    "DatasetError": "llvfsr.data.datasets",
    "FaceDataset": "llvfsr.data.datasets",
    "FolderFaces": "llvfsr.data.datasets",
    "SyntheticFaces": "llvfsr.data.datasets",
    "open_dataset": "llvfsr.data.datasets",
    "SyntheticFace": "llvfsr.data.synthetic",
    "render_face": "llvfsr.data.synthetic",
    "eye_region_mask": "llvfsr.data.synthetic",
    "face_region_mask": "llvfsr.data.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llvfsr.data' has no attribute {name!r}")

"""Face data: synthetic faces with exact priors, real face folders, the bicubic degradation, preparation tools.

The names below are imported on first use, so ``import llvfsr.data.degrade`` does not load the renderer.
"""

from llvfsr.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)

"""Fig. 4 (`python -m analysis.figures priors`) drawn from a real prior store of synthetic faces."""

from __future__ import annotations

import numpy as np

from analysis.figures import main, priors_figure
from llvfsr.data.degrade import lr_faces
from llvfsr.data.synthetic import colourise_mask, render_face
from llvfsr.priors.extract import extract_priors
from llvfsr.priors.sources import make_source
from llvfsr.priors.store import PriorStore

HR, SCALE, N, SEED = 64, 8, 6, 3


class TinySyntheticFaces:
    """The slice of the FaceDataset interface the store and the figure use, over the synthetic renderer."""

    name, split, hr_size = "synthetic", "test", HR

    def __len__(self) -> int:
        return N

    def item_id(self, i: int) -> str:
        return str(i)

    def exact_priors(self, i: int):
        return render_face(SEED, i, HR)

    def load_hr_batch(self, idx: list[int]) -> np.ndarray:
        return np.stack([self.exact_priors(i).image for i in idx])

    def texts(self, i: int):
        return None

    def fingerprint(self) -> dict:
        return {"name": "synthetic-test", "seed": SEED, "n": N, "hr_size": HR, "split": "test"}


def make_store(root, kinds=("mask", "depth", "caption", "description")):
    data = TinySyntheticFaces()
    store = PriorStore.open(root, data, scale=SCALE, shard_size=4)
    extract_priors(store, data, {k: make_source(k, "synthetic") for k in kinds}, progress=False)
    return store, data


def test_priors_figure_panels_show_the_store(tmp_path):
    store, data = make_store(tmp_path)
    indices = [4, 1]
    fig = priors_figure(store, data, indices, wrap=40)
    assert len(fig.axes) == 2 * 6
    for row, i in enumerate(indices):
        face = data.exact_priors(i)
        hr_ax, lr_ax, mask_ax, depth_ax, cap_ax, des_ax = fig.axes[6 * row : 6 * row + 6]
        np.testing.assert_array_equal(np.asarray(hr_ax.images[0].get_array()), face.image)
        np.testing.assert_array_equal(np.asarray(lr_ax.images[0].get_array()), lr_faces(face.image[None], SCALE)[0])
        np.testing.assert_array_equal(np.asarray(mask_ax.images[0].get_array()), colourise_mask(face.mask))
        np.testing.assert_allclose(np.asarray(depth_ax.images[0].get_array()), face.depth, atol=1e-4)
        assert " ".join(cap_ax.texts[0].get_text().split()) == " ".join(face.caption.split())
        description = des_ax.texts[0].get_text()
        assert " ".join(description.split()) == " ".join(face.description.split())
        assert max(len(line) for line in description.splitlines()) <= 40
    assert fig.axes[-1].get_xlabel() == "(f) Description"


def test_missing_fields_leave_empty_panels(tmp_path):
    store, data = make_store(tmp_path, kinds=("mask", "caption"))
    fig = priors_figure(store, data, [0])
    assert len(fig.axes[2].images) == 1 and len(fig.axes[3].images) == 0  # mask drawn, no depth
    assert len(fig.axes[4].texts) == 1 and len(fig.axes[5].texts) == 0


def test_cli_writes_png(tmp_path):
    from llvfsr.data.datasets import open_dataset

    data = open_dataset("synthetic", "test", n=5, hr_size=HR)
    store = PriorStore.open(tmp_path / "store", data, scale=SCALE)
    extract_priors(store, data, {k: make_source(k, "synthetic") for k in ("mask", "depth", "caption", "description")},
                  progress=False)  # fmt: skip
    out = tmp_path / "fig4.png"
    assert main(["priors", "--store", str(store.directory), "--n", "3", "--out", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > im.size[1] > 100  # three rows of six panels: wider than tall


def test_cli_rejects_a_folder_that_is_no_store(tmp_path, capsys):
    assert main(["priors", "--store", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "manifest.json" in capsys.readouterr().err

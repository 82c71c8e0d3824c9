"""Identity distance through DeepFace's PyTorch ArcFace, offline, on random weights (the plumbing, not the values)."""

import numpy as np
import pytest
import torch

from llvfsr.identity import IdentityDistance


@pytest.fixture(scope="module")
def random_arcface():
    torch.manual_seed(0)
    return IdentityDistance("ArcFace", allow_random=True, device="cpu")


@pytest.fixture(scope="module")
def faces():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, 3, 16, 16, generator=g)
    # Smooth, face-sized images (128x128): random low-frequency content, as a face crop is to a random net.
    return torch.nn.functional.interpolate(base, size=(128, 128), mode="bilinear", align_corners=False)


def test_distance_shape_range_symmetry(random_arcface, faces):
    other = faces.flip(0)
    d = random_arcface(faces, other)
    assert d.shape == (3,) and d.dtype == np.float64
    assert np.all((d >= 0) & (d <= 2))
    assert d[1] < 1e-9 and d[0] > 1e-4 and d[2] > 1e-4  # the middle image is paired with itself
    np.testing.assert_allclose(random_arcface(other, faces), d, atol=1e-9)
    np.testing.assert_allclose(random_arcface(faces, faces), 0.0, atol=1e-9)


def test_distance_is_per_pair_cosine(random_arcface, faces):
    """Each value is 1 - cos of that pair's embeddings (not an all-pairs matrix), and batching changes nothing."""
    e = random_arcface.embed(faces)
    assert e.shape == (3, 512) and np.all(np.isfinite(e))
    noisy = (faces + 0.1 * torch.randn(faces.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    f = random_arcface.embed(noisy)
    expected = 1 - np.sum(e * f, axis=1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(f, axis=1))
    np.testing.assert_allclose(random_arcface(faces, noisy), expected, atol=1e-9)
    single = np.concatenate([random_arcface.embed(faces[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(single, e, rtol=1e-4, atol=1e-5)


def test_embedding_equals_deepface_represent(random_arcface, faces, monkeypatch):
    """Our preprocessing is DeepFace's own: represent(detector_backend="skip") on the same model gives the same."""
    from deepface.modules import modeling, representation

    monkeypatch.setattr(modeling, "build_model", lambda task, model_name: random_arcface.client)
    ours = random_arcface.embed(faces)
    bgr = (faces * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()[..., ::-1].copy()
    for i in range(3):
        result = representation.represent(img_path=bgr[i], model_name="ArcFace", detector_backend="skip")
        np.testing.assert_allclose(result[0]["embedding"], ours[i], rtol=1e-4, atol=1e-5)


def test_weights_file_is_loaded(random_arcface, faces, tmp_path):
    path = tmp_path / "arcface_weights.pth"
    torch.save(random_arcface.client.model.state_dict(), path)
    loaded = IdentityDistance("ArcFace", weights_path=path, device="cpu")
    np.testing.assert_allclose(loaded.embed(faces), random_arcface.embed(faces), rtol=1e-5, atol=1e-6)
    torch.manual_seed(123)
    assert not np.allclose(IdentityDistance("ArcFace", allow_random=True).embed(faces), loaded.embed(faces))


def test_missing_weights_fail_clearly(tmp_path, monkeypatch):
    from deepface.commons import weight_utils

    def offline(url):
        raise ConnectionError(f"offline test: {url}")

    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))  # an empty DeepFace cache
    monkeypatch.setattr(weight_utils, "ensure_source_is_reachable", offline)
    with pytest.raises(RuntimeError, match="weights_path=PATH"):
        IdentityDistance("ArcFace")
    with pytest.raises(FileNotFoundError):
        IdentityDistance("ArcFace", weights_path=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="PyTorch"):
        IdentityDistance("SFace", allow_random=True)

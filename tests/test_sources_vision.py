"""The mask and depth sources (face-parser, depth-anything, sam) on tiny random-initialised models, no downloads."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

transformers = pytest.importorskip("transformers")

from llvfsr.priors.sources import ItemContext, make_source  # noqa: E402
from llvfsr.priors.sources.depth_anything import DepthAnythingDepth, normalise_depth  # noqa: E402
from llvfsr.priors.sources.face_parser import FaceParserMask, label_lookup  # noqa: E402
from llvfsr.priors.sources.sam import SamMask, canonical_face_layout, label_sam_masks  # noqa: E402
from llvfsr.priors.types import MASK_CLASSES  # noqa: E402

HR = 64


def lr_faces(n: int = 2, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth random LR 'faces', uint8 [n, size, size, 3] (smooth so the upsampled images are not pure noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR)) for c in coarse])


def items(n: int) -> list[ItemContext]:
    return [ItemContext(index=i, item_id=str(i), dataset=None) for i in range(n)]


def upsampled(lr: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(im).resize((HR, HR), Image.BICUBIC) for im in lr]


# --- face parser -------------------------------------------------------------------------------------------


def tiny_segformer(id2label: dict[int, str]):
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    return model, transformers.SegformerImageProcessor(size={"height": 32, "width": 32})


# The parser's own order and spellings, differing from ours, so the mapping by name is exercised.
PARSER_NAMES = ["hair", "background", "Left Eye", "right_eye", "skin", "nose", "eyeglasses", "l_brow", "r_brow",
                "l_ear", "r_ear", "mouth", "upper_lip", "lower_lip", "hat", "earring", "necklace", "neck",
                "cloth"]  # fmt: skip


def test_label_lookup_maps_by_name_and_rejects_unknown():
    table = label_lookup(dict(enumerate(PARSER_NAMES)))
    assert [MASK_CLASSES[i] for i in table] == ["hair", "background", "l_eye", "r_eye", "skin", "nose", "eye_g",
                                                "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip",
                                                "hat", "ear_r", "neck_l", "neck", "cloth"]  # fmt: skip
    with pytest.raises(ValueError, match="beard"):
        label_lookup({0: "background", 1: "beard"})


def test_face_parser_matches_reference_pipeline_and_is_deterministic():
    model, processor = tiny_segformer(dict(enumerate(PARSER_NAMES)))
    source = FaceParserMask(model=model, processor=processor, device="cpu", batch_size=2)
    lr = lr_faces(3)
    out = source(lr, HR, items(3))
    assert len(out) == 3
    assert all(m.shape == (HR, HR) and m.dtype == np.uint8 for m in out)
    # Reference: run the model by hand and map each winning parser class to our id by its name.
    with torch.no_grad():
        pixels = processor(images=upsampled(lr), return_tensors="pt")["pixel_values"]
        logits = F.interpolate(model(pixel_values=pixels).logits, size=(HR, HR), mode="bilinear", align_corners=False)
    winners = logits.argmax(1).numpy()
    ours = {"Left Eye": "l_eye", "right_eye": "r_eye", "upper_lip": "u_lip", "lower_lip": "l_lip",
            "eyeglasses": "eye_g", "earring": "ear_r", "necklace": "neck_l"}  # fmt: skip
    table = np.array([MASK_CLASSES.index(ours.get(name, name)) for name in PARSER_NAMES])
    expected = table[winners]
    np.testing.assert_array_equal(np.stack(out), expected)
    assert len(np.unique(np.stack(out))) > 1  # a random model still splits the image; a constant map would hide bugs
    np.testing.assert_array_equal(np.stack(source(lr, HR, items(3))), np.stack(out))
    fp = source.fingerprint()
    assert fp["source"] == "face-parser" and "model_id" in fp and "revision" in fp and fp["version"]


def test_face_parser_loads_from_local_folder_offline(tmp_path):
    model, processor = tiny_segformer(dict(enumerate(MASK_CLASSES)))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    lr = lr_faces(2)
    direct = FaceParserMask(model=model, processor=processor, device="cpu")(lr, HR, items(2))
    source = make_source("mask", "face-parser", model_id=str(tmp_path), device="cpu")
    assert isinstance(source, FaceParserMask) and source.fingerprint()["model_id"] == str(tmp_path)
    np.testing.assert_array_equal(np.stack(source(lr, HR, items(2))), np.stack(direct))
    with pytest.raises(OSError, match="local folder"):
        FaceParserMask(model_id=str(tmp_path / "missing"), device="cpu")


# --- depth anything ----------------------------------------------------------------------------------------


def tiny_depth_anything():
    backbone = transformers.Dinov2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=28, patch_size=7,
        out_features=["stage1", "stage2"], reshape_hidden_states=False,
    )  # fmt: skip
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16],
        fusion_hidden_size=8, head_hidden_size=8, patch_size=7,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    processor = transformers.DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False)
    return model, processor


def test_normalise_depth_per_image_minmax_and_flip():
    pred = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[2.0, 2.0], [2.0, 2.0]]])
    out = normalise_depth(pred)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    torch.testing.assert_close(out[1], torch.zeros(2, 2))  # constant map: no division by zero
    torch.testing.assert_close(normalise_depth(pred[:1], larger_is_nearer=False)[0], 1.0 - out[0])


def test_depth_anything_shapes_range_reference_and_flip():
    model, processor = tiny_depth_anything()
    lr = lr_faces(3)
    source = DepthAnythingDepth(model=model, processor=processor, device="cpu")
    out = source(lr, HR, items(3))
    assert all(d.shape == (HR, HR) and d.dtype == np.float32 for d in out)
    for d in out:
        assert d.min() == 0.0 and d.max() == pytest.approx(1.0)
    with torch.no_grad():
        pixels = processor(images=upsampled(lr), return_tensors="pt")["pixel_values"]
        raw = model(pixel_values=pixels).predicted_depth[:, None]
    ref = F.interpolate(raw, size=(HR, HR), mode="bicubic", align_corners=False)[:, 0]
    ref = (ref - ref.amin((1, 2), keepdim=True)) / (ref.amax((1, 2), keepdim=True) - ref.amin((1, 2), keepdim=True))
    np.testing.assert_allclose(np.stack(out), ref.numpy(), atol=1e-5)
    flipped = DepthAnythingDepth(model=model, processor=processor, device="cpu", larger_is_nearer=False)(
        lr, HR, items(3)
    )
    np.testing.assert_allclose(np.stack(flipped), 1.0 - np.stack(out), atol=1e-5)
    assert source.fingerprint()["larger_is_nearer"] is True
    assert make_source("depth", "depth-anything", model=model, processor=processor, device="cpu").device.type == "cpu"


# --- SAM ---------------------------------------------------------------------------------------------------


def test_canonical_layout_places_parts_where_an_aligned_face_has_them():
    layout = canonical_face_layout(128)
    centroid = {}
    for name in ("l_eye", "r_eye", "nose", "mouth", "hair", "skin", "neck"):
        ys, xs = np.nonzero(layout == MASK_CLASSES.index(name))
        assert len(ys) > 0, name
        centroid[name] = (xs.mean(), ys.mean())
    assert centroid["l_eye"][0] < 64 < centroid["r_eye"][0]  # "l_" on the image's left, as the synthetic faces
    assert centroid["l_eye"][1] < centroid["nose"][1] < centroid["mouth"][1] < centroid["neck"][1]
    assert layout[0, 0] == 0 and layout.max() < len(MASK_CLASSES)


def test_label_sam_masks_rule():
    size = 64
    layout = canonical_face_layout(size)
    eye = layout == MASK_CLASSES.index("l_eye")
    face = (layout == MASK_CLASSES.index("skin")) | eye
    blob = np.zeros_like(eye)
    blob[0:4, 0:4] = True  # a corner: background in the layout
    masks = [  # given smallest first: the rule must paint by area, largest first
        {"segmentation": eye, "bbox": [0, 0, 1, 1]},
        {"segmentation": blob, "bbox": [0, 0, 4, 4]},
        {"segmentation": face, "bbox": [0, 0, 1, 1]},
    ]
    labels = label_sam_masks(masks, layout)
    assert (labels[eye] == MASK_CLASSES.index("l_eye")).all()  # the small mask overwrote the large one
    assert (labels[face & ~eye] == MASK_CLASSES.index("skin")).all()
    assert (labels[~face] == 0).all()  # uncovered pixels and the corner blob are background
    np.testing.assert_array_equal(label_sam_masks(masks[::-1], layout), labels)  # order-independent


def test_label_sam_masks_finds_parts_off_the_mean_position():
    layout = canonical_face_layout(128)
    eye = layout == MASK_CLASSES.index("r_eye")
    shifted = np.roll(eye, 6, axis=1)  # the eye of a face a little wider than the mean
    assert (layout[shifted] == MASK_CLASSES.index("r_eye")).mean() < 0.5  # the overlap rule alone would miss it
    labels = label_sam_masks([{"segmentation": shifted, "bbox": [0, 0, 1, 1]}], layout)
    assert (labels[shifted] == MASK_CLASSES.index("r_eye")).all() and (labels[~shifted] == 0).all()
    big = np.zeros_like(eye)
    big[:, 100:] = True  # 22% of the image at the right edge: large, so labelled by overlap (background)
    assert (label_sam_masks([{"segmentation": big, "bbox": [100, 0, 28, 128]}], layout)[big] == 0).all()


def tiny_sam():
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    dim, image_size, patch = 32, 64, 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=patch,
            embed_dim=dim,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=False,
            window_size=0,
        ),  # fmt: skip
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(image_size // patch, image_size // patch),
            input_image_size=(image_size, image_size),
            mask_in_chans=4,
        ),  # fmt: skip
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            num_multimask_outputs=3,
            iou_head_depth=1,
            iou_head_hidden_dim=16,
        ),  # fmt: skip
    )
    return sam.eval()


def test_sam_source_end_to_end_tiny_model():
    pytest.importorskip("segment_anything")
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    source = SamMask(model=tiny_sam(), generator_options=options, device="cpu")
    lr = lr_faces(2)
    out = source(lr, HR, items(2))
    assert all(m.shape == (HR, HR) and m.dtype == np.uint8 and m.max() < len(MASK_CLASSES) for m in out)
    # Reference: the generator's raw masks through the stated rule.
    raw = source.generator.generate(np.asarray(upsampled(lr)[0]))
    assert len(raw) > 0
    np.testing.assert_array_equal(out[0], label_sam_masks(raw, canonical_face_layout(HR)))
    np.testing.assert_array_equal(np.stack(source(lr, HR, items(2))), np.stack(out))
    fp = source.fingerprint()
    assert fp["source"] == "sam" and fp["generator_options"]["points_per_side"] == 4
    with pytest.raises(ValueError, match="checkpoint"):
        SamMask(device="cpu")

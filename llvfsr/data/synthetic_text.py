"""Attributes of a synthetic face, and its caption (BLIP-2 like) and description (GPT-4 like).

The caption names only attributes that survive an 8x down-sampling (gender cue, smile, hair, hat), as a
captioner that sees the LR face would. The description names every attribute, including the ones that
are invisible at 32x32 (iris colour, thin glasses frames, small earrings): that gap is what lets a model
that reads the description beat one that does not.
"""

from __future__ import annotations

import numpy as np

RGB = tuple[int, int, int]

SKIN_TONES: dict[str, RGB] = {
    "pale": (238, 204, 182), "fair": (226, 184, 152), "olive": (200, 156, 112),
    "tan": (178, 126, 88), "brown": (140, 94, 64), "dark brown": (96, 64, 44),
}  # fmt: skip
HAIR_COLOURS: dict[str, RGB] = {
    "black": (28, 24, 22), "dark brown": (66, 44, 30), "brown": (108, 74, 46), "auburn": (130, 58, 32),
    "blond": (200, 166, 104), "red": (164, 74, 38), "grey": (150, 148, 146), "white": (218, 216, 210),
}  # fmt: skip
HAIR_STYLES = ("short", "long", "bangs", "bald")
# Iris colours: the vivid colour of the iris sectors. The iris is rendered so that its local mean colour is the
# same for every eye colour (see `iris_palette`), so the colour averages away in the LR image.
EYE_COLOURS: dict[str, RGB] = {
    "blue": (40, 110, 230), "green": (40, 170, 70), "brown": (150, 80, 30), "grey": (175, 180, 190),
    "amber": (225, 150, 20),
}  # fmt: skip
IRIS_MEAN: RGB = (112, 100, 92)  # the shared local mean of every iris (a neutral hazel)
FRAME_COLOURS: dict[str, RGB] = {"black": (20, 20, 22), "gold": (196, 160, 70), "silver": (190, 192, 198)}
METALS: dict[str, RGB] = {"gold": (236, 196, 80), "silver": (222, 224, 230)}
CLOTH_COLOURS: dict[str, RGB] = {
    "white": (232, 232, 228), "black": (30, 30, 34), "navy": (34, 46, 96), "red": (170, 36, 40),
    "green": (46, 110, 64), "grey": (120, 122, 126), "yellow": (220, 184, 60), "purple": (100, 56, 130),
    "light blue": (130, 170, 214),
}  # fmt: skip
BACKGROUND_COLOURS: dict[str, RGB] = {
    "white": (238, 238, 236), "light grey": (190, 192, 194), "dark grey": (70, 72, 76), "blue": (70, 110, 170),
    "teal": (60, 130, 130), "beige": (214, 196, 164), "pink": (220, 170, 180), "olive green": (120, 126, 70),
}  # fmt: skip
HAT_COLOURS: dict[str, RGB] = {"black": (32, 30, 30), "red": (160, 40, 40), "beige": (200, 180, 140)}
MOUTHS = ("neutral", "closed smile", "open smile")


def _pick(rng: np.random.Generator, options, p=None):
    keys = list(options)
    return keys[int(rng.choice(len(keys), p=p))]


def sample_attributes(rng: np.random.Generator) -> dict:
    """Draw every attribute of one face. The number of draws never depends on earlier draws, so an override of
    one attribute (see `render_face`) leaves all the others, and the geometry drawn after them, unchanged."""
    gender = "woman" if rng.random() < 0.5 else "man"
    u = rng.random(16)
    style_p = [0.2, 0.5, 0.3, 0.0] if gender == "woman" else [0.6, 0.1, 0.1, 0.2]
    hair_style = _pick(rng, HAIR_STYLES, p=style_p)
    attrs = {
        "gender": gender,
        "skin_tone": _pick(rng, SKIN_TONES),
        "hair_colour": _pick(rng, HAIR_COLOURS, p=[0.2, 0.2, 0.16, 0.08, 0.16, 0.06, 0.08, 0.06]),
        "hair_style": hair_style,
        "eye_colour": _pick(rng, EYE_COLOURS),
        "glasses": _pick(rng, FRAME_COLOURS) if u[0] < 0.35 else "none",
        "mouth": _pick(rng, MOUTHS, p=[0.35, 0.3, 0.35]),
        "beard": ("stubble" if u[2] < 0.5 else "full beard") if gender == "man" and u[1] < 0.4 else "none",
        "earrings": _pick(rng, METALS) if u[3] < (0.5 if gender == "woman" else 0.12) else "none",
        "necklace": _pick(rng, METALS) if u[4] < (0.3 if gender == "woman" else 0.08) else "none",
        "hat": _pick(rng, HAT_COLOURS) if u[5] < 0.1 else "none",
        "lipstick": bool(gender == "woman" and u[6] < 0.5),
        "cloth_colour": _pick(rng, CLOTH_COLOURS),
        "background_colour": _pick(rng, BACKGROUND_COLOURS),
        "background_style": "gradient" if u[7] < 0.5 else "plain",
    }
    if attrs["hat"] != "none" and hair_style == "bangs":
        attrs["hair_style"] = "long"  # a fringe under a cap reads as long hair
    return attrs


def _hair_phrase(attrs: dict) -> str:
    style, colour = attrs["hair_style"], attrs["hair_colour"]
    if style == "bald":
        return "a bald head"
    if style == "bangs":
        return f"{colour} hair with bangs"
    return f"{style} {colour} hair"


def make_caption(attrs: dict, rng: np.random.Generator) -> str:
    """A short BLIP-2 style caption naming only coarse attributes that are visible at 32x32."""
    smiling = attrs["mouth"] != "neutral"
    person = ("smiling " if smiling else "") + attrs["gender"]
    parts = [f"a photo of a {person}"]
    if attrs["hat"] != "none":
        parts.append(f"wearing a {attrs['hat']} cap")
    elif attrs["hair_style"] == "bald":
        parts.append("with a bald head")
    else:
        parts.append(f"with {_hair_phrase(attrs)}")
    if attrs["beard"] == "full beard" and rng.random() < 0.7:
        parts.append("and a beard")
    return " ".join(parts)


def make_description(attrs: dict, rng: np.random.Generator) -> str:
    """A GPT-4 style description of several sentences that states every attribute of the face."""
    a = attrs
    pronoun, possessive = ("She", "Her") if a["gender"] == "woman" else ("He", "His")
    mouth = {
        "neutral": "a neutral expression with closed lips",
        "closed smile": "a gentle closed-mouth smile",
        "open smile": "a broad open smile that shows the teeth",
    }[a["mouth"]]
    opener = ("The image shows", "This is a portrait of", "The photo shows")[int(rng.integers(3))]
    sentences = [f"{opener} a {a['gender']} with {a['skin_tone']} skin and {mouth}."]
    if a["hat"] != "none":
        sentences.append(f"{pronoun} wears a {a['hat']} cap over {_hair_phrase(a)}.")
    else:
        sentences.append(f"{pronoun} has {_hair_phrase(a)}.")
    sentences.append(f"{possessive} eyes are {a['eye_colour']}.")
    if a["glasses"] == "none":
        sentences.append(f"{pronoun} wears no glasses.")
    else:
        sentences.append(f"{pronoun} wears glasses with thin {a['glasses']} frames.")
    if a["beard"] != "none":
        sentences.append(f"{pronoun} has a {a['beard']}.")
    elif a["gender"] == "man":
        sentences.append(f"{pronoun} is clean-shaven.")
    if a["lipstick"]:
        sentences.append(f"{pronoun} wears red lipstick.")
    jewellery = []
    jewellery.append(f"small {a['earrings']} earrings" if a["earrings"] != "none" else "no earrings")
    jewellery.append(f"a thin {a['necklace']} necklace" if a["necklace"] != "none" else "no necklace")
    sentences.append(f"{pronoun} wears {jewellery[0]} and {jewellery[1]}.")
    sentences.append(f"{pronoun} is dressed in {a['cloth_colour']} clothing.")
    bg = "a gradient" if a["background_style"] == "gradient" else "a plain"
    sentences.append(f"The background is {bg} {a['background_colour']}.")
    return " ".join(sentences)


def iris_palette(eye_colour: str | None, vivid_share: float, strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Vivid and counter-tinted colours of an iris, float RGB in [0, 255].

    The vivid sectors carry the eye colour; the others are tinted the other way, so that an area-weighted average
    over both is `IRIS_MEAN` for every eye colour. The 8x antialiased down-sampling averages over the whole
    pinwheel, so the LR image holds (almost) nothing of the eye colour, while the HR iris differs strongly.
    `strength` < 1 moves the vivid colour towards the mean (a half-vivid checker cannot balance blue at full strength).
    """
    mean = np.asarray(IRIS_MEAN, np.float64)
    if eye_colour is None:  # the colour-neutral iris (`llvfsr.data.synthetic.hide_from_lr`)
        return mean, mean
    vivid = mean + strength * (np.asarray(EYE_COLOURS[eye_colour], np.float64) - mean)
    other = mean - (vivid - mean) * vivid_share / (1.0 - vivid_share)
    if other.min() < 0 or other.max() > 255:
        raise ValueError(f"iris colour {eye_colour!r} cannot be balanced around {IRIS_MEAN} at {vivid_share}")
    return vivid, other

"""Geometry and painting of one synthetic face: signed-distance parts composited in painter's order.

Every part is a signed-distance field in face coordinates (`u` to the image right, `v` down, in units of the
face half-width), so the antialiased colour, the hard labels, the depth and the landmarks come from one geometry.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from llvfsr.data import synthetic_text as text
from llvfsr.priors.types import MASK_CLASSES

LABEL = {name: i for i, name in enumerate(MASK_CLASSES)}
EYE_X, EYE_Y, EYE_HALF_W, EYE_HALF_H = 0.42, -0.08, 0.25, 0.12
IRIS_RADIUS = 0.15  # face units: 4-4.5 % of the image size at the drawn scales
# The iris: a pinwheel of four vivid sectors (the eye colour, VIVID_SHARE of each quarter turn, centred on the face's
# axes) between sectors tinted the other way, balanced so that its mean colour is the same for every eye colour.
# Why this pattern (docs/decisions.md, "Controls"): the colour must average away in the LR face, yet a model that
# reads the colour from the text must be able to know where to draw it. Fine fibres, whose phase the LR face does
# not show, had an expected colour equal to the shared mean for every eye colour (a pixel loss gains nothing by
# drawing them); concentric rings leaked the colour into the LR face. The pinwheel's place follows from the iris
# centre and the face's angle, and its four-fold symmetry cancels in the 8x down-sampling (centred on the diagonals,
# the lids cut the sectors unevenly and the colour leaked a little).
PUPIL, LIMBUS = 0.38, 0.75  # in iris radii: the pupil's edge, the start of the limbal darkening
IRIS_SECTORS, VIVID_SHARE = 4, 0.35
# The checker iris (`iris="checker"`, the control preset): the vivid and counter-tinted colours alternate pixel by
# pixel on the image grid, so a network knows exactly where each goes (its pixel shuffle holds every sub-pixel
# position in a channel of its own), where the pinwheel's sectors must be placed from the iris centre and the face's
# angle. With the oracle colour token it was learnt several times faster (docs/decisions.md, "Controls").
IRIS_TEXTURES = ("pinwheel", "checker")
CHECKER_STRENGTH = 0.6  # half the pixels vivid: blue cannot be balanced around the shared mean at full strength
MOUTH_Y = 0.68


def _limbal_darkening(r: np.ndarray) -> np.ndarray:
    """Factor by which the limbal ring darkens the iris at radius `r` (in iris radii)."""
    return 1.0 - 0.45 * np.clip((r - LIMBUS) / (1.0 - LIMBUS), 0.0, 1.0)


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise, float32 [size, size], roughly N(0, 1/3), with features of size/cells pixels."""
    grid = (rng.random((cells + 3, cells + 3), dtype=np.float32) - 0.5) * 2.0
    big = Image.fromarray(grid, "F").resize((size * (cells + 3) // cells,) * 2, Image.BICUBIC)
    off = size * 3 // (2 * cells)
    return np.asarray(big)[off : off + size, off : off + size]


def _band(v: np.ndarray, lower, upper, u: np.ndarray, half_width: float) -> np.ndarray:
    """Signed distance (face units, negative inside) of the region lower <= v <= upper, |u| <= half_width."""
    return np.maximum(np.maximum(lower - v, v - upper), np.abs(u) - half_width)


def _ellipse(u, v, cu, cv, a, b) -> np.ndarray:
    """Approximate signed distance of an axis-aligned ellipse, in face units."""
    return (np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2) - 1.0) * min(a, b)


class _Canvas:
    """Painter's-order compositor: antialiased colour, hard labels and depth from the same distance fields."""

    def __init__(self, background: np.ndarray, px_per_unit: float):
        self.rgb = background.astype(np.float32)
        self.label = np.zeros(background.shape[:2], np.uint8)
        self.z = np.zeros(background.shape[:2], np.float32)
        self.fg = np.zeros(background.shape[:2], np.float32)
        self.px = px_per_unit

    def paint(self, dist, label: str | None, colour, z=None, foreground: bool = True) -> None:
        """Composite one part given its signed distance (face units, [H, W]).

        `colour` is RGB in [0, 1]: a constant, a full [H, W, 3] array, or a function of the part's bounding-box
        slices returning the colour of that box (so expensive colours are computed only where they are drawn).
        """
        d_px = dist * self.px
        near = d_px < 0.5
        rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
        if rows.size == 0:
            return
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        d_px = d_px[box]
        alpha = np.clip(0.5 - d_px, 0.0, 1.0)
        colour = colour(box) if callable(colour) else np.asarray(colour, np.float32)
        if colour.ndim == 3 and colour.shape[:2] == self.label.shape:
            colour = colour[box]
        rgb = self.rgb[box]
        rgb += alpha[..., None] * (colour - rgb)
        inside = d_px < 0
        if label is not None:
            self.label[box][inside] = LABEL[label]
        if z is not None:
            z = z[box] if np.ndim(z) == 2 else z
            self.z[box] = np.where(inside, z, self.z[box])
        if foreground:
            self.fg[box] += alpha * (1.0 - self.fg[box])


def face_geometry(rng: np.random.Generator, size: int) -> dict:
    """Pose and shape parameters; always the same number of draws, whatever the attributes."""
    r = rng.random(12).tolist()  # python floats keep the float32 pixel grids float32 (NEP 50)
    return {
        "angle": float(np.deg2rad((r[0] - 0.5) * 20.0)),
        "cx": size * (0.5 + (r[1] - 0.5) * 0.08),
        "cy": size * (0.47 + (r[2] - 0.5) * 0.06),
        "scale": size * (0.26 + r[3] * 0.04),  # pixels per face unit
        "width": 0.93 + r[4] * 0.12,
        "gaze": ((r[5] - 0.5) * 0.08, (r[6] - 0.5) * 0.03),
        "light": np.array([(r[7] - 0.5) * 1.4, (r[8] - 0.5) * 1.0 - 0.3, 1.0]),
        "mouth_width": 0.27 + r[9] * 0.06,
        "brow_lift": r[10] * 0.04,
        "gradient_angle": r[11] * 2 * float(np.pi),
    }


def zoom_on_eyes(geo: dict, size: int, zoom: float) -> dict:
    """The same face magnified `zoom` times about the midpoint of its eyes, which moves to the image centre.

    At zoom 3 a 64 px image holds both eyes with irises of about 8 px radius (a tenth of the pixels), so what the
    description says of the irises weighs in the loss: the positive control of the text priors."""
    if zoom == 1:
        return geo
    if zoom <= 0:
        raise ValueError(f"synthetic zoom must be > 0, got {zoom}")
    px = geo["scale"] * zoom
    c, s = np.cos(geo["angle"]), np.sin(geo["angle"])
    centre = (size - 1) / 2
    return {**geo, "scale": px, "cx": centre + px * s * EYE_Y, "cy": centre - px * c * EYE_Y}


def _to_image(geo: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Face coordinates -> (x, y) pixel coordinates."""
    c, s = np.cos(geo["angle"]), np.sin(geo["angle"])
    k = geo["scale"]
    return np.stack([geo["cx"] + k * (c * u - s * v), geo["cy"] + k * (s * u + c * v)], axis=-1)


def _taper(attrs: dict) -> float:
    return 0.24 if attrs["gender"] == "woman" else 0.12


def _head_half_width(v, width: float, taper: float) -> np.ndarray:
    t = np.clip(v / 1.32, 0.0, 1.0)
    return width * (1.0 - taper * t**2) * np.sqrt(np.clip(1.0 - (v / 1.32) ** 2, 0.0, 1.0))


def _mouth_curves(u, geo: dict, attrs: dict):
    """Centre line, opening and lip thicknesses of the mouth as functions of u (face units)."""
    mw = geo["mouth_width"] * (1.12 if attrs["mouth"] == "open smile" else 1.0)
    t = np.clip(1.0 - (u / mw) ** 2, 0.0, 1.0)
    lift = 0.0 if attrs["mouth"] == "neutral" else 0.05
    centre = MOUTH_Y - lift * (u / mw) ** 2
    opening = (0.11 if attrs["mouth"] == "open smile" else 0.0) * t
    t06 = np.exp(0.6 * np.log(np.maximum(t, 1e-9))) * (t > 0)  # t ** 0.6, several times faster than np.power
    upper = 0.075 * t06 * (1.0 - 0.3 * np.exp(-((u / 0.05) ** 2)))
    lower = 0.1 * t06
    return mw, centre, opening, upper, lower


def landmarks(geo: dict, attrs: dict) -> np.ndarray:
    """The 68 iBUG landmarks, float32 [68, 2] (x, y) pixels, computed from the same curves that draw the face."""
    w, taper = geo["width"], _taper(attrs)
    alpha = np.linspace(0.0, np.pi / 2, 9)
    v_jaw = -0.05 + (1.32 - -0.05) * np.sin(alpha)
    u_jaw = _head_half_width(v_jaw, w, taper)
    jaw = np.concatenate([np.stack([-u_jaw, v_jaw], 1), np.stack([u_jaw[-2::-1], v_jaw[-2::-1]], 1)])
    du = np.linspace(-0.24, 0.24, 5)
    brow_v = _brow_centre(du, geo)
    brows = np.concatenate([np.stack([-EYE_X + du, brow_v], 1), np.stack([EYE_X + du, brow_v], 1)])
    nose = [(0.0, -0.04), (0.0, 0.07), (0.0, 0.18), (0.0, 0.29)]
    nose += [(x, 0.37 + 0.02 * (1 - abs(x) / 0.12)) for x in (-0.12, -0.06, 0.0, 0.06, 0.12)]
    eyes = []
    for side in (-1, 1):
        ex = side * EYE_X
        corner, third = 0.92 * EYE_HALF_W, EYE_HALF_W / 3
        top = lambda d: EYE_Y - 0.85 * EYE_HALF_H * (1 - (d / EYE_HALF_W) ** 2)
        bot = lambda d: EYE_Y + 0.85 * 0.8 * EYE_HALF_H * (1 - (d / EYE_HALF_W) ** 2)
        # iBUG order: corner, two upper-lid points, corner, two lower-lid points, clockwise in the image
        eyes += [(ex - corner, EYE_Y), (ex - third, top(-third)), (ex + third, top(third)), (ex + corner, EYE_Y),
                 (ex + third, bot(third)), (ex - third, bot(-third))]  # fmt: skip
    mw, _, _, _, _ = _mouth_curves(np.zeros(1), geo, attrs)
    uo = np.array([-mw, -2 * mw / 3, -mw / 3, 0.0, mw / 3, 2 * mw / 3, mw]) * 0.92
    _, c_o, o_o, up_o, lo_o = _mouth_curves(uo, geo, attrs)
    # a quarter of the lip thickness inside the outer border, so the points round onto the lips
    top_o, bot_o = c_o - o_o / 2 - 0.75 * up_o, c_o + o_o / 2 + 0.75 * lo_o
    outer = [(uo[i], top_o[i] if 0 < i < 6 else c_o[i]) for i in range(7)]
    outer += [(uo[i], bot_o[i]) for i in (5, 4, 3, 2, 1)]
    ui = np.array([-0.85 * mw, -0.45 * mw, 0.0, 0.45 * mw, 0.85 * mw])
    _, c_i, o_i, _, _ = _mouth_curves(ui, geo, attrs)
    inner = [(ui[0], c_i[0])] + [(ui[i], c_i[i] - o_i[i] / 2) for i in (1, 2, 3)] + [(ui[4], c_i[4])]
    inner += [(ui[i], c_i[i] + o_i[i] / 2) for i in (3, 2, 1)]
    pts = np.concatenate([jaw, brows, np.array(nose), np.array(eyes), np.array(outer), np.array(inner)])
    return _to_image(geo, pts[:, 0], pts[:, 1]).astype(np.float32)


def _brow_centre(du, geo: dict):
    return -0.40 - geo["brow_lift"] - 0.06 * (1.0 - (du / 0.27) ** 2)


def _smooth_ramp(d_px: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of a one-pixel antialiasing ramp at signed distance `d_px` (pixels)."""
    return np.clip(0.5 - d_px, 0.0, 1.0)


def _textures(rng: np.random.Generator, size: int) -> dict:
    """Every random texture of a face, always drawn in the same order so that attribute overrides keep them."""
    return {
        "lo": _noise(rng, size, 4),
        "mid": _noise(rng, size, 16),
        "hi": _noise(rng, size, 64),
        "white": rng.standard_normal((size, size), dtype=np.float32),
        "strands": rng.random(480, dtype=np.float32),
    }


def _rgb(colour) -> np.ndarray:
    return np.asarray(colour, np.float32) / 255.0


def _background(attrs: dict, geo: dict, tex: dict, xs, ys, size: int) -> np.ndarray:
    base = _rgb(text.BACKGROUND_COLOURS[attrs["background_colour"]])
    gain = 1.0 + 0.05 * tex["lo"]
    if attrs["background_style"] == "gradient":
        a = geo["gradient_angle"]
        t = ((xs - size / 2) * np.cos(a) + (ys - size / 2) * np.sin(a)) / size  # about [-0.7, 0.7]
        gain = gain + 0.45 * t
    return base * gain[..., None]


def _hair_texture(attrs: dict, tex: dict, u, v) -> np.ndarray:
    """Hair albedo: strands radiating from a crown above the head, plus a slow sheen."""
    n = tex["strands"].size
    pos = (np.arctan2(u, v + 1.7) / (2 * np.pi) + 0.5) * n
    strand = np.interp(pos, np.arange(n + 1), np.append(tex["strands"], tex["strands"][0]))
    base = _rgb(text.HAIR_COLOURS[attrs["hair_colour"]])
    gain = 0.62 + 0.6 * strand + 0.12 * tex["mid"]
    return base * gain[..., None] + (0.05 * strand)[..., None]


def _head_depth(u, v, q):
    """Height field of the head (face units): an ellipsoid plus nose, sockets, cheeks, lips and chin."""
    g = lambda cu, cv, su, sv: np.exp(-(((u - cu) / su) ** 2) - ((v - cv) / sv) ** 2)
    z = 0.9 * np.sqrt(np.clip(1.0 - q, 0.0, 1.0))
    bridge = 0.16 * np.exp(-((u / 0.07) ** 2)) * np.clip((v + 0.12) / 0.4, 0.0, 1.0) * (v < 0.36)
    z = z + bridge + 0.12 * g(0, 0.29, 0.11, 0.08)
    z = z - 0.06 * (g(-EYE_X, EYE_Y, 0.2, 0.12) + g(EYE_X, EYE_Y, 0.2, 0.12))
    z = z + 0.04 * (g(-0.5, 0.28, 0.25, 0.2) + g(0.5, 0.28, 0.25, 0.2)) + 0.05 * g(0, MOUTH_Y, 0.28, 0.1)
    return z + 0.04 * g(0, 1.12, 0.25, 0.15) + 0.03 * (g(-EYE_X, -0.4, 0.3, 0.08) + g(EYE_X, -0.4, 0.3, 0.08))


def _eye_colour_map(attrs: dict, geo: dict, du, dv, t, px: float, checker: np.ndarray | None = None) -> np.ndarray:
    """Sclera, iris (vivid and counter-tinted sectors balanced around one mean colour; with `checker`, a bool map
    of the vivid pixels, a pixel checkerboard instead), pupil, glint and lashes."""
    sclera = _rgb((236, 232, 226)) * (1.0 - 0.3 * (1.0 - t))[..., None]
    gx, gy = geo["gaze"]
    iu, iv = du - gx, dv - gy
    r = np.sqrt(iu**2 + iv**2)
    if checker is not None:
        vivid_rgb, other_rgb = text.iris_palette(attrs["eye_colour"], 0.5, CHECKER_STRENGTH)
        vivid = checker[..., None].astype(np.float64)
    else:
        vivid_rgb, other_rgb = text.iris_palette(attrs["eye_colour"], VIVID_SHARE)
        turns = (np.arctan2(iv, iu) / (2 * np.pi) * IRIS_SECTORS) % 1.0
        from_centre = np.minimum(turns, 1.0 - turns)  # angular distance to the nearest vivid sector's centre (periods)
        edge = (from_centre - VIVID_SHARE / 2) * (2 * np.pi / IRIS_SECTORS) * r  # face units, negative inside
        vivid = _smooth_ramp(edge * px)[..., None]
    # the limbal ring darkens every sector alike, so the iris mean is the same for every eye colour
    iris = (other_rgb + vivid * (vivid_rgb - other_rgb)) / 255.0 * _limbal_darkening(r / IRIS_RADIUS)[..., None]
    out = sclera + _smooth_ramp((r - IRIS_RADIUS) * px)[..., None] * (iris - sclera)
    out = out + _smooth_ramp((r - PUPIL * IRIS_RADIUS) * px)[..., None] * (_rgb((14, 11, 11)) - out)
    glint = np.sqrt((iu + 0.3 * IRIS_RADIUS) ** 2 + (iv + 0.35 * IRIS_RADIUS) ** 2) - 0.035
    out = out + _smooth_ramp(glint * px)[..., None] * (1.0 - out)
    top = -EYE_HALF_H * t
    lash = np.clip(1.0 - (dv - top) * px / 1.6, 0.0, 1.0) * (t > 0)
    return out * (1.0 - 0.85 * lash)[..., None]


def paint_face(attrs: dict, geo: dict, rng: np.random.Generator, size: int, iris: str = "pinwheel"):
    """Paint a face. Returns (image uint8 [S,S,3] RGB, mask uint8 [S,S], depth float32 [S,S] in [0, 1]).

    `iris`: the texture that carries the eye colour, one of `IRIS_TEXTURES`."""
    if iris not in IRIS_TEXTURES:
        raise ValueError(f"synthetic iris texture must be one of {IRIS_TEXTURES}, got {iris!r}")
    tex = _textures(rng, size)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    checker = (np.add.outer(np.arange(size), np.arange(size)) % 2 == 0) if iris == "checker" else None
    cos_a, sin_a, px = float(np.cos(geo["angle"])), float(np.sin(geo["angle"])), geo["scale"]
    dx, dy = xs - geo["cx"], ys - geo["cy"]
    u, v = (cos_a * dx + sin_a * dy) / px, (-sin_a * dx + cos_a * dy) / px
    w, hair_style, woman = geo["width"], attrs["hair_style"], attrs["gender"] == "woman"
    canvas = _Canvas(_background(attrs, geo, tex, xs, ys, size), px)
    hair = _hair_texture(attrs, tex, u, v)
    skin = (
        _rgb(text.SKIN_TONES[attrs["skin_tone"]])
        * (1.0 + 0.05 * tex["lo"] + 0.05 * tex["mid"] + 0.05 * tex["hi"] + 0.025 * tex["white"])[..., None]
    )

    if hair_style in ("long", "bangs"):
        length = 2.4 if hair_style == "long" else 0.8
        back = np.minimum(_ellipse(u, v, 0, -0.12, 1.22 * w, 1.45), _band(v, -0.1, length, u, 1.2 * w + 0.06 * v))
        canvas.paint(back, "hair", hair * 0.8, z=0.45 * np.sqrt(np.clip(1 - (u / 1.3) ** 2, 0, 1)))
    elif hair_style == "short":
        back = np.maximum(_ellipse(u, v, 0, -0.16, 1.1 * w, 1.34), v - 0.05)
        canvas.paint(back, "hair", hair * 0.85, z=0.45 * np.sqrt(np.clip(1 - (u / 1.2) ** 2, 0, 1)))
    for side, label in ((-1, "l_ear"), (1, "r_ear")):
        canvas.paint(_ellipse(u, v, side * w * 0.97, 0.05, 0.15, 0.28), label, skin * 0.93, z=0.3)
    neck_d = np.maximum(np.abs(u) - (0.5 + 0.1 * np.clip(v - 1.0, 0, 1)) * w, 0.5 - v)
    canvas.paint(neck_d, "neck", skin * 0.8, z=0.5 * np.sqrt(np.clip(1 - (u / 0.6) ** 2, 0, 1)))
    cloth_d = np.maximum(1.5 + 0.07 * u**2 - v, -_ellipse(u, v, 0, 1.48, 0.48, 0.42))
    cloth = _rgb(text.CLOTH_COLOURS[attrs["cloth_colour"]]) * (1 + 0.1 * tex["mid"] + 0.06 * tex["hi"])[..., None]
    canvas.paint(cloth_d, "cloth", cloth, z=0.05 + 0.3 * np.sqrt(np.clip(1 - (u / 2.6) ** 2, 0, 1)))
    thin = max(1.0, size / 256) / px  # 1 px lines at 256 (glasses frames, necklace chain): faint after 8x
    if attrs["necklace"] != "none":
        metal = _rgb(text.METALS[attrs["necklace"]])
        vn, slope = 1.72 - 0.35 * (u / 0.5) ** 2, 1.4 * u / 0.25
        chain = np.maximum(np.abs(v - vn) / np.sqrt(1 + slope**2) - thin / 2, np.abs(u) - 0.55)
        canvas.paint(np.minimum(chain, _ellipse(u, v, 0, 1.76, 0.03, 0.03)), "neck_l", metal * 0.9, z=0.55)

    taper = _taper(attrs)
    q = (u / (w * (1.0 - taper * np.clip(v / 1.32, 0, 1) ** 2))) ** 2 + (v / 1.32) ** 2
    z_head = _head_depth(u, v, q)
    face = skin
    if attrs["beard"] != "none":
        amount = 0.35 if attrs["beard"] == "stubble" else 0.9
        cover = np.clip((v - (0.48 - 0.45 * np.abs(u) * np.sqrt(np.abs(u)))) * px / 3.0, 0, 1) * amount
        stubble = hair * (0.7 + 0.3 * (tex["white"] > 0.3))[..., None]
        face = skin + cover[..., None] * (stubble - skin)
    canvas.paint((np.sqrt(q) - 1.0) * w, "skin", face, z=z_head)
    nose_w = 0.07 + 0.12 * np.clip((v + 0.1) / 0.5, 0, 1) ** 2
    canvas.paint(np.maximum(np.abs(u) - nose_w, np.maximum(-0.1 - v, v - 0.41)), "nose", face, z=z_head)
    for side in (-1, 1):
        canvas.paint(_ellipse(u, v, side * 0.085, 0.375, 0.045, 0.022), None, skin * 0.35, z=z_head)

    for side, label in ((-1, "l_eye"), (1, "r_eye")):
        du, dv = u - side * EYE_X, v - EYE_Y
        t = np.clip(1.0 - (du / EYE_HALF_W) ** 2, 0.0, 1.0)
        eye_d = np.maximum(np.maximum(-EYE_HALF_H * t - dv, dv - 0.8 * EYE_HALF_H * t), np.abs(du) - EYE_HALF_W)
        eye_rgb = lambda box, du=du, dv=dv, t=t: _eye_colour_map(
            attrs, geo, du[box], dv[box], t[box], px, None if checker is None else checker[box]
        )
        canvas.paint(eye_d, label, eye_rgb, z=z_head - 0.02)
    brow_rgb = hair * (0.75 if attrs["hair_colour"] not in ("blond", "white", "grey") else 0.55)
    for side, label in ((-1, "l_brow"), (1, "r_brow")):
        du = u - side * EYE_X
        thick = (0.05 if woman else 0.07) * (1.0 - 0.45 * np.clip(side * du / 0.27, 0, 1))
        brow = np.maximum(np.abs(v - _brow_centre(du, geo)) - thick / 2, np.abs(du) - 0.27)
        canvas.paint(brow, label, brow_rgb, z=z_head)

    mw, centre, opening, upper, lower = _mouth_curves(u, geo, attrs)
    lip = _rgb((175, 45, 60)) if attrs["lipstick"] else skin * _rgb((225, 160, 160))
    lip = lip * (1 + 0.04 * tex["hi"])[..., None] if lip.ndim == 1 else lip
    top_gap, bottom_gap = centre - opening / 2, centre + opening / 2
    canvas.paint(_band(v, top_gap - upper, top_gap, u, mw), "u_lip", lip, z=z_head)
    canvas.paint(_band(v, bottom_gap, bottom_gap + lower, u, mw), "l_lip", lip, z=z_head)
    if attrs["mouth"] == "open smile":
        teeth = (v < top_gap + 0.55 * opening) & (np.cos(u * 2 * np.pi / 0.075) < 0.9)
        inside = np.where(teeth[..., None], _rgb((235, 230, 214)), _rgb((70, 20, 26)))
        canvas.paint(_band(v, top_gap, bottom_gap, u, mw), "mouth", inside, z=z_head - 0.03)
    else:
        canvas.paint(_band(v, centre - 0.5 / px, centre + 0.5 / px, u, mw * 0.97), None, lip * 0.45, z=z_head)

    if hair_style != "bald":
        if hair_style == "bangs":
            hairline = -0.5 + 0.02 * np.sin(u * 45.0) + 0.08 * u**2
        else:
            hairline = -0.62 + 0.22 * u**2
        front = np.maximum(_ellipse(u, v, 0, -0.06, w * 1.06, 1.4), v - hairline)
        canvas.paint(front, "hair", hair, z=np.maximum(z_head, 0.4) + 0.05)
    if attrs["hat"] != "none":
        crown = np.maximum(_ellipse(u, v, 0, -0.15, w * 1.12, 1.38), v - (-0.62 + 0.04 * u**2))
        hat = _rgb(text.HAT_COLOURS[attrs["hat"]]) * (1 + 0.06 * tex["mid"])[..., None]
        canvas.paint(np.minimum(crown, _band(v, -0.72, -0.58, u, w * 1.2)), "hat", hat, z=np.maximum(z_head, 0.4) + 0.1)
    if attrs["glasses"] != "none":
        _paint_glasses(canvas, attrs, u, v, w, thin)
    if attrs["earrings"] != "none":
        metal = _rgb(text.METALS[attrs["earrings"]])
        for side in (-1, 1):
            canvas.paint(_ellipse(u, v, side * (w * 0.97 + 0.01), 0.37, 0.028, 0.028), "ear_r", metal, z=0.35)
    return _shade(canvas, geo)


def _paint_glasses(canvas: _Canvas, attrs: dict, u, v, w: float, thin: float) -> None:
    """Thin frames in the image; the lens area is labelled eye_g where it covers skin or nose (CelebAMask-HQ)."""
    lenses = []
    for side in (-1, 1):
        du, dv = u - side * EYE_X, v - (EYE_Y - 0.02)
        lenses.append((np.sqrt(np.sqrt(np.square(np.square(du / 0.3)) + np.square(np.square(dv / 0.21)))) - 1.0) * 0.21)
    lens = np.minimum(*lenses)
    bridge = _band(v, EYE_Y - 0.06 - thin / 2, EYE_Y - 0.06 + thin / 2, u, EYE_X - 0.29)
    temple_v = EYE_Y - 0.04
    temples = np.maximum(np.abs(v - temple_v) - thin / 2, np.maximum(0.715 - np.abs(u), np.abs(u) - w * 0.98))
    frame = np.minimum(np.minimum(np.abs(lens) - thin / 2, bridge), temples)
    region = np.minimum(np.minimum(lens, bridge), temples) * canvas.px < 0
    on_face = region & ((canvas.label == LABEL["skin"]) | (canvas.label == LABEL["nose"]))
    canvas.paint(frame, None, _rgb(text.FRAME_COLOURS[attrs["glasses"]]), z=None)
    canvas.label[on_face] = LABEL["eye_g"]  # the depth stays the face's: a lens step would shade a visible rim


def _shade(canvas: _Canvas, geo: dict):
    """Lambert shading of the foreground by the normals of the (slightly smoothed) depth; returns outputs."""
    z_px = ndimage.gaussian_filter(canvas.z, 1.0) * canvas.px * 0.8
    gy, gx = np.gradient(z_px)
    light = geo["light"] / np.linalg.norm(geo["light"])
    lambert = np.clip((-gx * light[0] - gy * light[1] + light[2]) / np.sqrt(gx**2 + gy**2 + 1.0), 0.0, 1.0)
    shade = 1.0 + canvas.fg * (0.36 + 0.72 * lambert - 1.0)
    image = np.clip(canvas.rgb * shade[..., None] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    fg = canvas.label != 0
    depth = np.where(fg, 0.1 + 0.9 * canvas.z / max(float(canvas.z.max()), 1e-6), 0.0).astype(np.float32)
    return image, canvas.label, depth

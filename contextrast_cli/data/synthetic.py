"""Procedurally drawn street-like scenes with exact per-pixel labels.

A scene is painted back to front (sky, buildings, ground, then objects sorted
by depth) into an *instance map*; every instance has a class and a colour, so
the label map is exactly "what is visible" and never anti-aliased. The image is
then built from instance colours, class-specific textures, shadows, global
illumination, blur and pixel noise.

Difficulty knobs are the module constants prefixed ``_`` below the palette:
colour families (overlap between classes), ``_COLOUR_JITTER``,
``_TEXTURE_GAIN``, ``_ILLUMINATION``, ``_COLOUR_CAST``, ``_BLUR_SIGMA``,
``_NOISE_STD``, ``_POLE_WIDTH`` and ``_OBJECT_COUNTS``.
"""

from __future__ import annotations

import cv2
import numpy as np

from contextrast_cli.config.datasets import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE  # noqa: F401  (re-exported)

GENERATOR_VERSION = 3
"""Bump whenever a change alters the rendered scenes; prepared folders record it."""

SKY, BUILDING, ROAD, SIDEWALK, TREE, CAR, POLE, PERSON = range(8)

_FAMILIES: dict[int, tuple[tuple[int, int, int], ...]] = {
    SKY: ((150, 185, 225), (195, 200, 210), (120, 160, 215)),
    BUILDING: ((150, 120, 100), (175, 165, 145), (120, 120, 128), (160, 90, 80)),
    ROAD: ((105, 100, 110), (120, 117, 120), (90, 90, 95)),
    SIDEWALK: ((150, 138, 128), (132, 126, 130), (165, 152, 135)),
    TREE: ((70, 110, 50), (90, 125, 60), (120, 115, 55)),
    CAR: ((180, 35, 35), (40, 60, 150), (205, 205, 205), (55, 55, 60),
          (130, 130, 135), (150, 120, 100)),
    POLE: ((60, 62, 66), (62, 78, 68), (150, 150, 140)),
    PERSON: ((60, 60, 120), (150, 40, 40), (40, 40, 40), (180, 170, 150),
             (60, 110, 70)),
}
_PARTS: dict[str, tuple[int, int, int]] = {
    "window": (60, 72, 95), "lit": (215, 195, 120), "glass": (40, 50, 62),
    "wheel": (22, 22, 24), "light": (200, 30, 25), "skin": (215, 170, 135),
    "lane": (215, 215, 200), "curb": (180, 175, 165),
}
_COLOUR_JITTER = 16.0            # std of per-instance colour jitter (0..255)
_TEXTURE_GAIN = 1.0              # multiplies every class texture amplitude
_ILLUMINATION = (0.7, 1.3)       # global brightness gain range
_COLOUR_CAST = 0.08              # per-channel gain jitter (+-)
_BLUR_SIGMA = (0.3, 0.8)         # Gaussian blur sigma at 120 px image height
_NOISE_STD = (2.0, 7.0)          # pixel noise std range (0..255)
_POLE_WIDTH = 5.0                # pole width in px at 120x160 (+ up to 0.6 near)
_OBJECT_COUNTS = {TREE: (1, 3), POLE: (2, 4), PERSON: (1, 4), CAR: (1, 4)}


class _Canvas:
    """Instance map (H, W) uint16 plus per-instance class and RGB colour."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.h, self.w = rng, height, width
        self.scale = min(height / 120.0, width / 160.0)
        self.inst = np.zeros((height, width), np.uint16)  # (H, W)
        self.shade = np.ones((height, width), np.float32)  # image-only
        self.horizon = height / 2.0  # y of the horizon, set by the layout
        self.classes: list[int] = []
        self.colours: list[np.ndarray] = []

    def new(self, cls: int, base=None) -> int:
        """Registers an instance of ``cls``; colour = family/base + jitter."""
        if base is None:
            fam = _FAMILIES[cls]
            base = fam[self.rng.integers(len(fam))]
        jitter = self.rng.normal(0.0, _COLOUR_JITTER, 3)
        self.colours.append(np.clip(np.asarray(base) + jitter, 0, 255))
        self.classes.append(cls)
        return len(self.classes) - 1

    def poly(self, pts, iid: int) -> None:
        """Fills polygon ``pts`` [(x, y), ...] with instance ``iid`` (no AA)."""
        arr = np.round(np.asarray(pts, np.float64)).astype(np.int32)
        cv2.fillPoly(self.inst, [arr], int(iid), cv2.LINE_8)

    def rect(self, x0, y0, x1, y1, iid: int) -> None:
        """Fills the closed box [x0, x1] x [y0, y1] (rounded to pixels)."""
        p0, p1 = (round(x0), round(y0)), (round(x1), round(y1))
        cv2.rectangle(self.inst, p0, p1, int(iid), -1, cv2.LINE_8)

    def ellipse(self, cx, cy, rx, ry, iid: int) -> None:
        """Fills an axis-aligned ellipse; radii are at least 1 px."""
        axes = (max(1, round(rx)), max(1, round(ry)))
        cv2.ellipse(self.inst, (round(cx), round(cy)), axes, 0, 0, 360,
                    int(iid), -1, cv2.LINE_8)


def _street(cv: _Canvas) -> dict:
    """Samples the street geometry: horizon, vanishing point, road edges."""
    r, h, w = cv.rng, cv.h, cv.w
    sides = [(-1, 1), (-1,), (1,)][r.choice(3, p=[0.7, 0.15, 0.15])]
    g = {"hy": h * r.uniform(0.36, 0.5), "vx": w * r.uniform(0.35, 0.65),
         "top": w * r.uniform(0.015, 0.05), "sides": sides}
    for s in (-1, 1):  # bottom half width of the road, sidewalk width
        g[("bot", s)] = w * (r.uniform(0.35, 0.6) if s in sides else 1.5)
        g[("walk", s)] = w * r.uniform(0.2, 0.45)
    return g


def _edge(g: dict, side: int, t: float, outer: float = 0.0) -> float:
    """x of the road edge (outer=0) or a sidewalk fraction at depth t in (0, 1]."""
    x = g["vx"] + side * (g["top"] + t * (g[("bot", side)] - g["top"]))
    return x + side * outer * t * g[("walk", side)]


def _buildings(cv: _Canvas, g: dict) -> None:
    """Row of facades, taller away from the vanishing point, with windows."""
    x, hy = 0.0, g["hy"]
    while x < cv.w:
        bw = cv.w * cv.rng.uniform(0.08, 0.25)
        d = abs(x + bw / 2 - g["vx"]) / cv.w
        f = np.clip(0.15 + 1.8 * d + cv.rng.normal(0, 0.2), 0.08, 1.0)
        top = hy - f * (hy - 0.02 * cv.h)
        iid = cv.new(BUILDING)
        cv.rect(x, top, x + bw, cv.h, iid)
        _windows(cv, iid, int(x), int(top), int(x + bw), hy - top)
        x += bw


def _windows(cv: _Canvas, iid: int, x0: int, y0: int, x1: int, size: float):
    """Vectorised window grid inside the box [x0, x1) x [y0, H)."""
    r = cv.rng
    py = max(3, round(size * r.uniform(0.1, 0.2)))
    px = max(3, round(py * r.uniform(0.8, 1.5)))
    ys, xs = np.mgrid[max(y0, 0):cv.h, max(x0, 0):min(x1, cv.w)]  # (h', w')
    mask = ((ys - y0 - 1) % py < py * r.uniform(0.4, 0.65)) & (
        (xs - x0 - 1) % px < px * r.uniform(0.4, 0.65))
    mask &= (xs - x0 >= 2) & (x1 - xs >= 2) & (ys - y0 >= 2)
    lit = r.random(((cv.h - y0) // py + 2, (x1 - x0) // px + 2)) < 0.25
    ids = np.where(lit[(ys - y0) // py, (xs - x0) // px],
                   cv.new(BUILDING, _PARTS["lit"]),
                   cv.new(BUILDING, _PARTS["window"]))
    view = cv.inst[max(y0, 0):, max(x0, 0):min(x1, cv.w)]
    view[mask & (view == iid)] = ids[mask & (view == iid)]


def _ground(cv: _Canvas, g: dict) -> None:
    """Sidewalk strips, road trapezoid and dashed lane marking."""
    hy, h = g["hy"], cv.h
    for s in g["sides"]:
        pts = [(_edge(g, s, t, o), hy + t * (h - hy)) for t, o in
               ((0, 0), (0, 1), (1, 1), (1, 0))]
        pts[1] = (pts[1][0] + s * g["top"], hy)
        cv.poly(pts, cv.new(SIDEWALK))
        curb = [(_edge(g, s, t, o), hy + t * (h - hy)) for t, o in
                ((0, 0), (1, 0), (1, 0.07), (0, 0.07))]
        cv.poly(curb, cv.new(SIDEWALK, _PARTS["curb"]))
    cv.poly([(_edge(g, -1, 0), hy), (_edge(g, 1, 0), hy),
             (_edge(g, 1, 1), h), (_edge(g, -1, 1), h)], cv.new(ROAD))
    lane, t = cv.new(ROAD, _PARTS["lane"]), 0.05
    while t < 1.0:
        t1 = t * 1.35
        quad = []
        for tt, sgn in ((t, -1), (t, 1), (t1, 1), (t1, -1)):
            c = (_edge(g, -1, tt) + _edge(g, 1, tt)) / 2
            quad.append((c + sgn * 0.008 * cv.w * tt, hy + tt * (h - hy)))
        cv.poly(quad, lane)
        t = t1 * 1.3


def _tree(cv: _Canvas, x: float, y: float, d: float) -> None:
    """Trunk plus a blobby crown; d = distance of the base below the horizon."""
    th = d * cv.rng.uniform(2.5, 3.5)
    iid, crown = cv.new(TREE, (90, 70, 50)), cv.new(TREE)
    cv.rect(x - 0.03 * th, y - 0.6 * th, x + 0.03 * th, y, iid)
    cx, cy, rad = x, y - 0.7 * th, 0.22 * th
    for _ in range(cv.rng.integers(4, 8)):
        ox, oy = cv.rng.normal(0, 0.45 * rad, 2)
        rr = rad * cv.rng.uniform(0.45, 0.8)
        cv.ellipse(cx + ox, cy + oy, rr, rr * cv.rng.uniform(0.7, 1.0), crown)


def _pole(cv: _Canvas, x: float, y: float, d: float) -> None:
    """Thin vertical pole, ``_POLE_WIDTH``..+0.6 px wide at 120x160 (scales, >= 1 px)."""
    pw = max(1, round(cv.scale * (_POLE_WIDTH + d / cv.h)))
    x0 = round(x - pw / 2)
    cv.rect(x0, y - d * cv.rng.uniform(2.5, 4.5), x0 + pw - 1, y, cv.new(POLE))


def _person(cv: _Canvas, x: float, y: float, d: float) -> None:
    """Head, torso and two legs; height grows with depth below the horizon."""
    ph = d * cv.rng.uniform(1.0, 1.25)
    legs, body = cv.new(PERSON), cv.new(PERSON)
    lw = max(1.0, 0.07 * ph)
    cv.rect(x - 1.6 * lw, y - 0.5 * ph, x - 0.3 * lw, y, legs)
    cv.rect(x + 0.3 * lw, y - 0.5 * ph, x + 1.6 * lw, y, legs)
    cv.ellipse(x, y - 0.6 * ph, 0.16 * ph, 0.22 * ph, body)
    cv.ellipse(x, y - 0.9 * ph, 0.08 * ph, 0.1 * ph, cv.new(PERSON, _PARTS["skin"]))


def _car(cv: _Canvas, x: float, y: float, d: float) -> None:
    """Rounded body, cabin with dark glass, wheels, tail lights, shadow."""
    ch = d * cv.rng.uniform(0.8, 1.0)
    cw = ch * cv.rng.uniform(1.2, 2.2)
    x0, x1, body = x - cw / 2, x + cw / 2, cv.new(CAR)
    axes = (round(0.6 * cw), max(1, round(0.08 * ch)))  # image-only shadow
    cv2.ellipse(cv.shade, (round(x), round(y)), axes, 0, 0, 360, 0.55, -1, cv2.LINE_AA)
    rad = 0.12 * ch
    cv.rect(x0 + rad, y - 0.65 * ch, x1 - rad, y - 0.12 * ch, body)
    cv.rect(x0, y - 0.65 * ch + rad, x1, y - 0.12 * ch - rad, body)
    for ex in (x0 + rad, x1 - rad):
        for ey in (y - 0.65 * ch + rad, y - 0.12 * ch - rad):
            cv.ellipse(ex, ey, rad, rad, body)
    cab = [(x0 + 0.2 * cw, y - ch), (x1 - 0.2 * cw, y - ch),
           (x1 - 0.05 * cw, y - 0.6 * ch), (x0 + 0.05 * cw, y - 0.6 * ch)]
    cv.poly(cab, body)
    glass = [(px + np.sign(x - px) * 0.06 * cw, py + 0.06 * ch * (py < y - 0.8 * ch))
             for px, py in cab]
    cv.poly(glass, cv.new(CAR, _PARTS["glass"]))
    wheel, light = cv.new(CAR, _PARTS["wheel"]), cv.new(CAR, _PARTS["light"])
    for wx in (x0 + 0.2 * cw, x1 - 0.2 * cw):
        cv.ellipse(wx, y - 0.1 * ch, 0.1 * cw, 0.1 * ch, wheel)
    for lx in (x0 + 0.04 * cw, x1 - 0.12 * cw):
        cv.rect(lx, y - 0.55 * ch, lx + 0.08 * cw, y - 0.45 * ch, light)


def _place(cv: _Canvas, g: dict, cls: int) -> tuple[float, float, float]:
    """Samples a ground point (x, y, depth below horizon) for class ``cls``."""
    r, hy = cv.rng, g["hy"]
    ranges = {CAR: (0.15, 0.75), TREE: (0.2, 0.6), PERSON: (0.35, 0.95)}
    t = r.uniform(*ranges.get(cls, (0.3, 0.9)))
    if cls == CAR:
        x = np.interp(r.uniform(0.2, 0.8), (0, 1), (_edge(g, -1, t), _edge(g, 1, t)))
    else:
        lo, hi = {POLE: (0.1, 0.35), TREE: (0.4, 0.9)}.get(cls, (0.15, 0.9))
        x = _edge(g, r.choice(g["sides"]), t, r.uniform(lo, hi))
    return x, hy + t * (cv.h - hy), t * (cv.h - hy)


def _objects(cv: _Canvas, g: dict) -> None:
    """Places trees, poles, persons and cars; draws them far to near."""
    draw = {TREE: _tree, POLE: _pole, PERSON: _person, CAR: _car}
    items, poles = [], []
    for cls, (lo, hi) in _OBJECT_COUNTS.items():
        for _ in range(cv.rng.integers(lo, hi + 1)):
            x, y, d = _place(cv, g, cls)
            gap = 2 * (_POLE_WIDTH + 1) * cv.scale + 2
            if cls == POLE and any(abs(x - p) < gap for p in poles):
                continue  # keep poles apart so each stays thin
            poles += [x] if cls == POLE else []
            items.append((y, cls, x, d))
    for y, cls, x, d in sorted(items):
        draw[cls](cv, x, y, d)


def _shadow(cv: _Canvas, g: dict) -> None:
    """Image-only wedge of building shadow over one side of the street."""
    if cv.rng.random() < 0.5:
        return
    xa, xb = sorted(cv.rng.uniform(0.1, 0.7, 2) * cv.w)
    pts = np.array([(0, g["hy"]), (xa, g["hy"]), (xb, cv.h), (0, cv.h)])
    if cv.rng.random() < 0.5:
        pts[:, 0] = cv.w - 1 - pts[:, 0]
    cv2.fillPoly(cv.shade, [np.round(pts).astype(np.int32)],
                 float(cv.rng.uniform(0.55, 0.8)), cv2.LINE_AA)


def _layout(rng: np.random.Generator, height: int, width: int) -> _Canvas:
    """Paints all instances back to front; instance 0 is the sky."""
    cv = _Canvas(rng, height, width)
    cv.new(SKY)
    g = _street(cv)
    _buildings(cv, g)
    _ground(cv, g)
    _shadow(cv, g)
    _objects(cv, g)
    cv.horizon = g["hy"]
    return cv


def _lowres(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise (H, W) float32 with blobs about ``cell`` px across."""
    small = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2))
    return cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def _textures(cv: _Canvas) -> list[np.ndarray]:
    """One multiplicative texture field (H, W) float32 per class, in order."""
    r, h, w, s = cv.rng, cv.h, cv.w, cv.scale
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)  # (H, W) each
    grain = r.standard_normal((h, w)).astype(np.float32)
    bk, tl, lw = max(2, round(3 * s)), max(4, round(9 * s)), max(1.0, 0.9 * s)
    bricks = (ys % bk < 1) | ((xs + (ys // bk % 2) * 1.5 * bk) % (3 * bk) < 1)
    tiles = (ys % tl < lw) | ((xs + 0.3 * ys) % tl < lw)
    fields = [
        0.25 * (ys / max(cv.horizon, 1.0) - 0.5) + 0.08 * _lowres(r, h, w, 30 * s),
        -0.15 * bricks + 0.04 * grain,
        0.09 * grain + 0.05 * _lowres(r, h, w, 8 * s),
        -0.25 * tiles + 0.04 * grain,
        0.3 * _lowres(r, h, w, 2.5 * s) + 0.1 * grain,
        0.12 * np.cos(ys * (2 * np.pi / (10 * s))) + 0.02 * grain,
        0.03 * grain,
        0.12 * _lowres(r, h, w, 4 * s) + 0.03 * grain,
    ]
    return [_TEXTURE_GAIN * f for f in fields]


def _paint(cv: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Turns the instance map into (image (H, W, 3) uint8, label (H, W) uint8)."""
    r = cv.rng
    label = np.asarray(cv.classes, np.uint8)[cv.inst]  # (H, W)
    img = np.asarray(cv.colours, np.float32)[cv.inst]  # (H, W, 3)
    tex = np.choose(label, _textures(cv))  # (H, W)
    ramp = 1 + r.uniform(-0.3, 0.3) * (np.arange(cv.w, dtype=np.float32) / cv.w - 0.5)
    gain = r.uniform(*_ILLUMINATION) * (1 + r.uniform(-_COLOUR_CAST, _COLOUR_CAST, 3))
    img *= ((1 + tex) * cv.shade * ramp)[..., None] * gain.astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), r.uniform(*_BLUR_SIGMA) * cv.scale)
    img += r.normal(0, r.uniform(*_NOISE_STD), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), label


def render_scene(seed: int, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws one street-like scene.

    Args:
        seed: dataset seed.
        index: scene index; (seed, index) fully determines the scene, so
            scenes can be generated in any order or in parallel.
        height: image height in pixels (>= 16 recommended).
        width: image width in pixels.

    Returns:
        ``(image, label)``: image (H, W, 3) uint8 RGB; label (H, W) uint8 with
        values in ``[0, len(SYNTHETIC_CLASSES))`` naming the visible class.
    """
    rng = np.random.default_rng([seed, index])
    return _paint(_layout(rng, height, width))

"""Drawing primitives for the procedural demo data: palettes, shapes, fill textures, backgrounds, probes.

Everything here is plain numpy and deterministic given its arguments; the random choices are made by the
caller (`alit_eval.data.demo`) and passed in, except for per-pixel noise, which takes an explicit
`numpy.random.Generator`. Coordinates are normalised: a pixel centre `(row, col)` of an `S x S` image sits
at `((row + 0.5) / S, (col + 0.5) / S)`, so a scene described in these units renders the same at any size.
Shapes are drawn crisp (no antialiasing) so that the instance masks are exactly the painted pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Color = tuple[int, int, int]

# ---------------------------------------------------------------------------------------------- colour


def hsv_to_rgb(h: float, s: float, v: float) -> Color:
    """Convert one HSV colour (all in [0, 1]) to an 8-bit RGB triple (the standard six-sector formula)."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return tuple(int(round(255 * c)) for c in rgb)  # type: ignore[return-value]


# Saturation / value ranges per palette. Scenes use mid saturation; the unfamiliar split uses the two
# extremes (neon: fully saturated and bright; pastel: almost grey), which scenes never produce.
PALETTES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "scene": ((0.35, 0.8), (0.35, 0.9)),
    "neon": ((0.92, 1.0), (0.92, 1.0)),
    "pastel": ((0.0, 0.12), (0.5, 1.0)),
}


def sample_color(rng: np.random.Generator, palette: str) -> Color:
    """Draw one colour from a named palette (see `PALETTES`)."""
    (s0, s1), (v0, v1) = PALETTES[palette]
    return hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(s0, s1), rng.uniform(v0, v1))


def contrast_color(c: Color) -> Color:
    """A second colour clearly distinct from `c`: darker for light colours, lighter for dark ones."""
    arr = np.asarray(c, dtype=np.float64)
    luma = 0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2]
    out = arr * 0.4 if luma > 110 else arr + (255.0 - arr) * 0.6
    return tuple(int(round(x)) for x in out)  # type: ignore[return-value]


def contrast_field(img: np.ndarray) -> np.ndarray:
    """Per-pixel `contrast_color` of a float `[H, W, 3]` image in [0, 255]; same shape and range."""
    luma = img @ np.array([0.299, 0.587, 0.114], dtype=img.dtype)
    return np.where((luma > 110)[..., None], img * 0.4, img + (255.0 - img) * 0.6)


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates `(y, x)`, each float32 `[size, size]` in (0, 1)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.broadcast_to(t[:, None], (size, size)), np.broadcast_to(t[None, :], (size, size))


# ---------------------------------------------------------------------------------------------- shapes
# Each shape is a predicate on local coordinates (u, v): the object's frame, rotated and divided by its
# radius, so every shape fits in |u|, |v| <= 1.5. `p` holds the family's shape parameters in [0, 1].


def _regular_polygon(u: np.ndarray, v: np.ndarray, n: int, radius: float = 1.0) -> np.ndarray:
    # Convex polygon as an intersection of half-planes: the apothem bounds the projection on each normal.
    apothem = radius * np.cos(np.pi / n)
    inside = np.ones(u.shape, dtype=bool)
    for k in range(n):
        a = 2 * np.pi * (k + 0.5) / n - np.pi / 2
        inside &= u * np.cos(a) + v * np.sin(a) <= apothem
    return inside


def _disc(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    return u * u + v * v <= 1.0


def _ellipse(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    b = 0.4 + 0.3 * p[0]  # minor/major axis ratio
    return u * u + (v / b) ** 2 <= 1.0


def _square(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    aspect = 0.6 + 0.4 * p[0]  # 1.0 is a square, less is a rectangle
    return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8 * aspect)


def _triangle(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    return _regular_polygon(u, v, 3)


def _ring(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    r2 = u * u + v * v
    inner = 0.45 + 0.2 * p[0]
    return (r2 <= 1.0) & (r2 >= inner * inner)


def _cross(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    w = 0.25 + 0.1 * p[0]  # half-width of each bar
    au, av = np.abs(u), np.abs(v)
    return ((au <= w) & (av <= 1.0)) | ((av <= w) & (au <= 1.0))


def _star(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    points = 5 + int(p[0] * 2.999)  # 5..7 points
    inner = 0.45
    theta = np.arctan2(v, u) * (points / (2 * np.pi))
    tri = np.abs(theta - np.round(theta))  # 0 at a tip, 0.5 between tips
    return np.sqrt(u * u + v * v) <= 1.0 - (1.0 - inner) * 2.0 * tri


# Held-out families: only the unfamiliar split draws these.


def _heart(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    # The classic implicit heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, with y pointing up and
    # shifted/scaled so it spans roughly [-1, 1].
    x, y = u * 1.2, -v * 1.2 + 0.15
    q = x * x + y * y - 1.0
    return q * q * q - x * x * y * y * y <= 0.0


def _crescent(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    shift = 0.35 + 0.2 * p[0]
    return (u * u + v * v <= 1.0) & ((u - shift) ** 2 + v * v > 0.85**2)


def _spiral(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    # A thick Archimedean spiral arm: radius grows by `pitch` per turn; keep the band half of each turn.
    r = np.sqrt(u * u + v * v)
    pitch = 0.3 + 0.1 * p[0]
    phase = (r / pitch - np.arctan2(v, u) / (2 * np.pi)) % 1.0
    return (r <= 1.0) & (phase < 0.55)


def _blob(u: np.ndarray, v: np.ndarray, p: tuple[float, ...]) -> np.ndarray:
    # Star-shaped region whose boundary radius is a random low-order Fourier series.
    theta = np.arctan2(v, u)
    edge = 0.72 + 0.12 * np.cos(2 * theta + 6.28 * p[0]) + 0.1 * np.cos(3 * theta + 6.28 * p[1])
    edge = edge + 0.06 * np.cos(5 * theta + 6.28 * p[2])
    return np.sqrt(u * u + v * v) <= edge


ShapeFn = Callable[[np.ndarray, np.ndarray, tuple[float, ...]], np.ndarray]

SHAPES: dict[str, ShapeFn] = {
    "disc": _disc,
    "ellipse": _ellipse,
    "square": _square,
    "triangle": _triangle,
    "ring": _ring,
    "cross": _cross,
    "star": _star,
    "heart": _heart,
    "crescent": _crescent,
    "spiral": _spiral,
    "blob": _blob,
}

# Per-family radius multipliers that give every family about the same area (that of a disc of radius
# 0.8) at mid parameters, so that "which family covers the most pixels" is not biased towards fat shapes.
# Measured by rasterising each family at p = 0.5; see tests/test_demo_data.py for the check.
SHAPE_SCALE: dict[str, float] = {
    "disc": 0.80,
    "ellipse": 1.08,
    "square": 0.99,
    "triangle": 1.24,
    "ring": 0.96,
    "cross": 0.99,
    "star": 1.08,
    "heart": 0.89,
    "crescent": 1.24,
    "spiral": 1.08,
    "blob": 1.10,
}


def shape_mask(
    family: str,
    y: np.ndarray,
    x: np.ndarray,
    center: tuple[float, float],
    radius: float,
    angle: float,
    params: tuple[float, ...],
) -> np.ndarray:
    """Rasterise one shape.

    Args:
        family: a key of `SHAPES`.
        y, x: normalised pixel-centre coordinates (any equal shapes, e.g. a crop of `pixel_grid`).
        center: `(cy, cx)` in normalised units.
        radius: normalised radius before the family's `SHAPE_SCALE`.
        angle: rotation in radians.
        params: family parameters, each in [0, 1].

    Returns:
        bool array shaped like `y`: True inside the shape.
    """
    r = radius * SHAPE_SCALE[family]
    dy, dx = y - center[0], x - center[1]
    c, s = np.cos(angle), np.sin(angle)
    u = (dx * c + dy * s) / r
    v = (-dx * s + dy * c) / r
    return SHAPES[family](u, v, params)


# ---------------------------------------------------------------------------------------------- textures
# A texture is a bool pattern: True pixels take the secondary colour. Periods are normalised units.

SCENE_TEXTURES = ("stripes", "checks", "dots")
HELDOUT_TEXTURES = ("noise", "rings")


def texture_pattern(
    kind: str,
    y: np.ndarray,
    x: np.ndarray,
    *,
    period: float,
    angle: float,
    center: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Rasterise a two-colour fill pattern.

    Args:
        kind: one of `SCENE_TEXTURES` or `HELDOUT_TEXTURES`.
        y, x: normalised pixel-centre coordinates.
        period: pattern period in normalised units.
        angle: orientation in radians (stripes, checks, dots).
        center: `(cy, cx)` of the concentric rings.
        rng: source of the per-pixel draws of "noise" (unused otherwise).

    Returns:
        bool array shaped like `y`.
    """
    c, s = np.cos(angle), np.sin(angle)
    a = (x * c + y * s) / period
    b = (-x * s + y * c) / period
    if kind == "stripes":
        return np.floor(a).astype(np.int64) % 2 == 1
    if kind == "checks":
        return (np.floor(a) + np.floor(b)).astype(np.int64) % 2 == 1
    if kind == "dots":
        fa, fb = a % 1.0 - 0.5, b % 1.0 - 0.5
        return fa * fa + fb * fb < 0.3**2
    if kind == "noise":
        return rng.random(y.shape) < 0.5
    if kind == "rings":
        r = np.sqrt((y - center[0]) ** 2 + (x - center[1]) ** 2) / period
        return np.floor(r).astype(np.int64) % 2 == 1
    raise ValueError(f"unknown texture {kind!r}")


# ---------------------------------------------------------------------------------------------- backgrounds


def _lerp_colors(t: np.ndarray, c0: Color, c1: Color) -> np.ndarray:
    a, b = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return a + t[..., None] * (b - a)


def gradient_image(size: int, c0: Color, c1: Color, angle: float) -> np.ndarray:
    """Linear gradient from `c0` to `c1` along direction `angle`; float32 `[size, size, 3]` in [0, 255]."""
    y, x = pixel_grid(size)
    proj = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle)
    t = np.clip(proj / np.sqrt(0.5) + 0.5, 0.0, 1.0)
    return _lerp_colors(t, c0, c1)


def smooth_noise_image(size: int, nodes: np.ndarray) -> np.ndarray:
    """Low-frequency value noise: a `[g, g, 3]` lattice of colours, smoothstep-interpolated.

    Args:
        size: output side length.
        nodes: float `[g, g, 3]` lattice colours in [0, 255], spanning the image corner to corner.

    Returns:
        float32 `[size, size, 3]` in [0, 255].
    """
    g = nodes.shape[0]
    t = (np.arange(size, dtype=np.float64) + 0.5) / size * (g - 1)
    i0 = np.minimum(np.floor(t).astype(np.int64), g - 2)
    f = t - i0
    f = f * f * (3 - 2 * f)  # smoothstep: no visible creases at lattice lines
    # Separable interpolation as two small matrix products: w[s, g] has two non-zeros per row.
    w = np.zeros((size, g))
    w[np.arange(size), i0] = 1 - f
    w[np.arange(size), i0 + 1] = f
    rows = np.tensordot(w, nodes, axes=(1, 0))  # [size, g, 3]: interpolated along y
    return np.ascontiguousarray((rows.transpose(0, 2, 1) @ w.T).transpose(0, 2, 1), dtype=np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round a float image in [0, 255] to uint8."""
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def distinct_color(rng: np.random.Generator, palette: str, avoid: list[Color]) -> Color:
    """Draw a palette colour at RGB distance >= 60 from every colour in `avoid` (best effort, 8 tries)."""
    # Bounded redraws keep objects visible against the background while generation stays cheap.
    for _ in range(8):
        c = sample_color(rng, palette)
        if all(np.linalg.norm(np.subtract(c, a, dtype=np.float64)) >= 60.0 for a in avoid):
            return c
    return c


def render_background(
    kind: str, size: int, rng: np.random.Generator, pix: np.random.Generator, palette: str, heldout: bool
) -> tuple[np.ndarray, list[Color]]:
    """Render a scene background.

    Args:
        kind: "flat", "gradient", "smooth-noise" or "texture".
        size: side length in pixels.
        rng: draws the background parameters (their number does not depend on `size`).
        pix: draws per-pixel noise (the "noise" texture).
        palette: a key of `PALETTES`.
        heldout: use `HELDOUT_TEXTURES` instead of `SCENE_TEXTURES` for the "texture" kind.

    Returns:
        uint8 `[size, size, 3]` image and its representative colours (for contrast checks).
    """
    if kind == "flat":
        c0 = sample_color(rng, palette)
        return np.broadcast_to(np.asarray(c0, np.uint8), (size, size, 3)).copy(), [c0]
    if kind == "gradient":
        c0 = sample_color(rng, palette)
        c1 = distinct_color(rng, palette, [c0])
        return to_uint8(gradient_image(size, c0, c1, rng.uniform(0, 2 * np.pi))), [c0, c1]
    # smooth-noise and texture share a low-frequency colour field; texture adds a two-tone pattern on top,
    # so a textured background is strictly richer than a smooth one (as its complexity weight says).
    g = int(rng.integers(3, 6))
    nodes = np.array([sample_color(rng, palette) for _ in range(g * g)], np.float64)
    field = smooth_noise_image(size, nodes.reshape(g, g, 3))
    mean = tuple(int(v) for v in nodes.mean(0))
    if kind == "smooth-noise":
        return to_uint8(field), [mean]  # type: ignore[list-item]
    # "texture": patterns from the held-out family in the unfamiliar split.
    tex = str(rng.choice(HELDOUT_TEXTURES if heldout else SCENE_TEXTURES))
    y, x = pixel_grid(size)
    pat = texture_pattern(
        tex, y, x, period=rng.uniform(0.06, 0.14), angle=rng.uniform(0, np.pi),
        center=(rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)), rng=pix,
    )  # fmt: skip
    img = np.where(pat[..., None], contrast_field(field), field)
    return to_uint8(img), [mean, contrast_color(mean)]  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------- probes

PROBE_KINDS: tuple[str, ...] = (
    "checker-2", "checker-4", "checker-8", "checker-16", "noise", "fractal", "flat", "gradient",
)  # fmt: skip

# Julia-set parameters c with well-known connected, detailed sets (textbook values).
JULIA_CS: tuple[complex, ...] = (-0.8 + 0.156j, -0.4 + 0.6j, 0.285 + 0.01j, -0.70176 - 0.3842j, -0.835 - 0.2321j)


def checker_image(size: int, cells: int, c0: Color, c1: Color) -> np.ndarray:
    """Axis-aligned checkerboard with `cells` cells per side; uint8 `[size, size, 3]`."""
    idx = (np.arange(size) * cells) // size
    odd = (idx[:, None] + idx[None, :]) % 2 == 1
    return np.where(odd[..., None], np.asarray(c1, np.uint8), np.asarray(c0, np.uint8))


def julia_image(size: int, c: complex, zoom: float, rotation: float, phase: np.ndarray) -> np.ndarray:
    """A Julia set coloured by smooth escape time through a cosine palette; uint8 `[size, size, 3]`.

    Args:
        size: output side length.
        c: the Julia parameter.
        zoom: half-width of the viewed square of the complex plane.
        rotation: rotation of the view in radians.
        phase: float `[3]` per-channel palette phases in [0, 1].
    """
    y, x = pixel_grid(size)
    z = ((x - 0.5) + 1j * (y - 0.5)).astype(np.complex128) * (2 * zoom) * np.exp(1j * rotation)
    max_iter = 48
    escape = np.full(z.shape, float(max_iter))
    alive = np.ones(z.shape, dtype=bool)
    for k in range(max_iter):
        z = np.where(alive, z * z + c, z)
        mag = np.abs(z)
        newly = alive & (mag > 4.0)
        # Smooth (continuous) escape count: k + 1 - log2(log|z|), the usual normalised iteration count.
        escape[newly] = k + 1 - np.log2(np.log(mag[newly]))
        alive &= ~newly
    t = np.sqrt(escape / max_iter)
    # Cosine palette a + b*cos(2*pi*(t + phase)), a = b = 0.5 (a common procedural-colour formula).
    rgb = 0.5 + 0.5 * np.cos(2 * np.pi * (t[..., None] * 1.5 + phase[None, None, :]))
    return to_uint8(rgb * 255.0)

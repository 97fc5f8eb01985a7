"""Rendering synthetic views: z-buffered ray casting, textures, shading and a camera response.

Every pixel keeps the nearest hit over all solids (depth along the optical axis), so masks
are exactly the visible pixels of each object after occlusion. Solids are only intersected
with the rays inside their projected bounding rectangle, and drawn near to far so that few
pixels are shaded twice; the room box is cast last, only where nothing else was hit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .synth_geometry import Camera, room_hit
from .synth_scene import CameraResponse, Material, Scene, SceneObject

TABLE_ID = -2  # id of table-top pixels (for contact shadows)
PROP_ID = -1  # any other unannotated surface; objects are 1..K, background 0


@dataclass
class Frame:
    """A render in progress: depth (H, W) float32, linear colour (H, W, 3) float32 and the id
    (H, W) int16 of the surface seen at each pixel."""

    depth: np.ndarray
    color: np.ndarray
    ids: np.ndarray

    @staticmethod
    def empty(height: int, width: int) -> "Frame":
        return Frame(np.full((height, width), np.inf, np.float32), np.zeros((height, width, 3), np.float32),
                     np.zeros((height, width), np.int16))

    def copy(self) -> "Frame":
        return Frame(self.depth.copy(), self.color.copy(), self.ids.copy())


def albedo(material: Material, points: np.ndarray) -> np.ndarray:
    """Surface colour (N, 3) linear RGB at local points (N, 3) metres."""
    c1 = np.array(material.color, np.float32)
    if material.texture == "flat" or len(points) == 0:
        return np.broadcast_to(c1, (len(points), 3))
    c2 = np.array(material.color2, np.float32)
    f, ph, axes = material.frequency, material.phases, material.axes
    x, y, z = points[:, 0], points[:, 1], points[:, 2]

    def along(i: int) -> np.ndarray:  # coordinate along random direction i
        return x * np.float32(axes[i][0]) + y * np.float32(axes[i][1]) + z * np.float32(axes[i][2])

    if material.texture == "stripes":
        s = np.clip(4 * np.sin(np.float32(2 * np.pi * f) * along(0) + np.float32(ph[0])), -1, 1) * 0.5 + 0.5
    elif material.texture == "checker":
        s = ((np.floor(x * f) + np.floor(y * f) + np.floor(z * f)) % 2).astype(np.float32)
    elif material.texture == "noise":
        waves = (np.sin(np.float32(2 * np.pi * f * (0.7 + 0.4 * i)) * along(i) + np.float32(ph[i])) for i in range(3))
        s = sum(waves) / 6 + 0.5
    elif material.texture == "wood":
        warp = 1.5 * np.sin(np.float32(2 * np.pi * f * 0.3) * along(1) + np.float32(ph[1]))
        s = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi * f) * along(0) + warp + np.float32(ph[0])) ** 3
    elif material.texture == "tiles":
        fx, fy = np.modf(x * f)[0], np.modf(y * f)[0]
        s = ((np.abs(fx) < 0.04) | (np.abs(fy) < 0.04)).astype(np.float32)
    else:
        raise ValueError(f"unknown texture {material.texture!r}")
    s = (np.float32(material.contrast) * s)[:, None]
    return c1 + (c2 - c1) * s


def draw(frame: Frame, camera: Camera, rays: np.ndarray, items: list[tuple[SceneObject, int]], scene: Scene) -> None:
    """Z-buffer ``items`` (object, id) into ``frame``; rays (3, H, W) from ``Camera.pixel_rays``."""
    light = np.array(scene.light, np.float32)
    order = sorted(items, key=lambda item: np.linalg.norm(np.array(item[0].shape.center) - camera.position))
    for obj, ident in order:
        box = camera.pixel_box(obj.shape.corners())
        if box is None:
            continue
        x0, y0, x1, y1 = box
        sub = rays[:, y0:y1, x0:x1]
        depth = frame.depth[y0:y1, x0:x1]  # views: writes go to the frame
        t = obj.shape.intersect(camera.position, sub[0], sub[1], sub[2])
        win = t < depth
        if not win.any():
            continue
        t_win, dirs = t[win], sub[:, win].T
        normal, local = obj.shape.surface(camera.position, dirs, t_win)
        shade = scene.ambient + (1 - scene.ambient) * np.clip(normal @ light, 0, 1)
        depth[win] = t_win
        frame.color[y0:y1, x0:x1][win] = albedo(obj.material, local) * shade[:, None]
        frame.ids[y0:y1, x0:x1][win] = ident


def draw_room(frame: Frame, camera: Camera, rays: np.ndarray, scene: Scene) -> None:
    """Walls, floor and ceiling wherever nothing nearer was hit."""
    empty = ~np.isfinite(frame.depth)
    if not empty.any():
        return
    dx, dy, dz = rays[0][empty], rays[1][empty], rays[2][empty]
    origin = camera.position.astype(np.float32)
    t, wall = room_hit(origin, (dx, dy, dz), scene.room_lo, scene.room_hi)
    points = np.stack([origin[0] + t * dx, origin[1] + t * dy, origin[2] + t * dz], axis=1)
    color = np.empty_like(points)
    for index, material in enumerate(scene.walls):
        sel = wall == index
        if sel.any():
            # a soft falloff with height keeps walls from looking flat
            color[sel] = albedo(material, points[sel]) * (0.75 + 0.1 * np.tanh(points[sel, 2]))[:, None]
    frame.depth[empty], frame.color[empty], frame.ids[empty] = t, color, 0


def contact_shadows(frame: Frame, camera: Camera, rays: np.ndarray, scene: Scene,
                    objects: tuple[SceneObject, ...]) -> None:
    """Darken the table top under and beside each object (a soft blob offset away from the light)."""
    light = np.array(scene.light)
    for obj in objects:
        cx, cy, _ = obj.shape.center
        a, b, h = obj.shape.size
        radius = max(a, b) * 1.4
        height = h if obj.shape.kind == "cylinder" else 2 * h
        offset = -light[:2] / max(light[2], 0.3) * height * 0.5
        sx, sy = cx + offset[0], cy + offset[1]
        corners = np.array([[sx + dx, sy + dy, z] for dx in (-2 * radius, 2 * radius)
                            for dy in (-2 * radius, 2 * radius) for z in (0.0, 0.001)])
        box = camera.pixel_box(corners)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        table = frame.ids[y0:y1, x0:x1] == TABLE_ID
        if not table.any():
            continue
        t = frame.depth[y0:y1, x0:x1][table]
        px = camera.position[0] + t * rays[0, y0:y1, x0:x1][table]
        py = camera.position[1] + t * rays[1, y0:y1, x0:x1][table]
        d2 = ((px - sx) ** 2 + (py - sy) ** 2) / radius**2
        frame.color[y0:y1, x0:x1][table] *= (1 - 0.45 * np.exp(-d2))[:, None].astype(np.float32)


def develop(color: np.ndarray, response: CameraResponse, noise: np.ndarray, exposure_jitter: float = 0.0) -> np.ndarray:
    """Linear colour (H, W, 3) float32 -> HxWx3 uint8 RGB: exposure, white balance,
    vignetting, gamma, lens blur, plus ``noise`` (H, W, 3) float32 in 0..1 units (a crop of
    a ``noise_field``)."""
    height, width = color.shape[:2]
    image = cv2.multiply(color, _gain_map(response, height, width), scale=1 + exposure_jitter)
    # gamma 2 (square root): close to sRGB and far cheaper than pow; the final conversion
    # saturates values above 1.
    image = cv2.GaussianBlur(cv2.sqrt(image), (0, 0), response.blur_sigma)
    return cv2.convertScaleAbs(cv2.add(image, noise), alpha=255.0)


def noise_field(rng: np.random.Generator, height: int, width: int, sigma: float, margin: int = 32) -> np.ndarray:
    """Gaussian sensor noise (H + margin, W + margin, 3) float32 (sigma in 0-255 units);
    frames take random crops of it, which is much cheaper than drawing noise per frame."""
    return (rng.standard_normal((height + margin, width + margin, 3), dtype=np.float32) * np.float32(sigma / 255.0))


def noise_crop(field: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random (H, W, 3) window of a noise field."""
    y = int(rng.integers(field.shape[0] - height + 1))
    x = int(rng.integers(field.shape[1] - width + 1))
    return field[y: y + height, x: x + width]


@functools.lru_cache(maxsize=8)
def _gain_map(response: CameraResponse, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32: exposure x white balance x vignetting (a camera's fixed response)."""
    y, x = np.ogrid[-1:1:height * 1j, -1:1:width * 1j]
    vignette = (1 - response.vignetting * 0.5 * (x * x + y * y)).astype(np.float32)
    gain = np.array(response.white_balance, np.float32) * np.float32(response.exposure)
    return np.ascontiguousarray(vignette[:, :, None] * gain)


def render_static(camera: Camera, rays: np.ndarray, scene: Scene, background_factor: int = 1) -> Frame:
    """The take's fixed part (props, objects, room, shadows) as one view sees it.

    With ``background_factor`` > 1 the unannotated background (room, table, furniture) is cast
    at that fraction of the resolution and upsampled: it is smooth, and this is the bulk of a
    moving camera's pixels. Objects are always cast at full resolution, so masks are exact.
    """
    props = [(prop, TABLE_ID if prop.name == "table" else PROP_ID) for prop in scene.props]
    if background_factor > 1:
        small = camera.scaled(background_factor)
        small_rays = small.pixel_rays()
        back = Frame.empty(small.height, small.width)
        draw(back, small, small_rays, props, scene)
        draw_room(back, small, small_rays, scene)
        contact_shadows(back, small, small_rays, scene, scene.objects)  # soft: half size is plenty
        size = (camera.width, camera.height)
        frame = Frame(
            cv2.resize(back.depth, size, interpolation=cv2.INTER_NEAREST),
            cv2.resize(back.color, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(back.ids, size, interpolation=cv2.INTER_NEAREST),
        )
        draw(frame, camera, rays, [(obj, i + 1) for i, obj in enumerate(scene.objects)], scene)
    else:
        frame = Frame.empty(camera.height, camera.width)
        draw(frame, camera, rays, [(obj, i + 1) for i, obj in enumerate(scene.objects)] + props, scene)
        draw_room(frame, camera, rays, scene)
        contact_shadows(frame, camera, rays, scene, scene.objects)
    return frame


def visible_masks(ids: np.ndarray, names: list[str], min_pixels: int) -> dict[str, np.ndarray]:
    """Masks (H, W) bool of objects with at least ``min_pixels`` visible pixels (ids 1..K)."""
    counts = np.bincount(np.clip(ids.ravel(), 0, None), minlength=len(names) + 1)
    return {name: ids == i + 1 for i, name in enumerate(names) if counts[i + 1] >= min_pixels}

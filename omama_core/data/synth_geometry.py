"""Pinhole cameras and analytic ray-shape intersection for the synthetic scenes.

World frame: metres, z up, the table top is the plane z = 0. Rays are given as one origin
(3,) and direction components (each an array of the pixels' shape) scaled so that their
camera-z component is 1: the ray parameter
``t`` is then the depth along the optical axis, the same for every surface, which is what the
z-buffer compares.

Shapes are solids turned by a yaw angle about z (and optionally tilted): ``Box``, ``Cylinder`` (a flat
one is a disc) and ``Ellipsoid`` (equal radii: a sphere). ``intersect`` returns, per ray, the
first hit ``t`` (inf on a miss); ``surface`` gives the world normal and the hit point in the
shape's own frame (texture coordinates that stick to the object) for the pixels that won.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-6


@dataclass(frozen=True)
class Camera:
    """A pinhole camera. rotation: world -> camera (rows: camera x right, y down, z forward)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    rotation: np.ndarray  # (3, 3)
    position: np.ndarray  # (3,) camera centre in world coordinates

    @staticmethod
    def looking_at(
        position: np.ndarray, target: np.ndarray, width: int, height: int, hfov_deg: float, roll_deg: float = 0.0
    ) -> "Camera":
        """A camera at ``position`` looking at ``target`` with horizontal field of view ``hfov_deg``."""
        position = np.asarray(position, dtype=np.float64)
        forward = np.asarray(target, dtype=np.float64) - position
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-6:  # looking straight down: any horizontal right works
            right = np.array([1.0, 0.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        roll = np.deg2rad(roll_deg)
        right, down = np.cos(roll) * right + np.sin(roll) * down, -np.sin(roll) * right + np.cos(roll) * down
        focal = (width / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
        return Camera(width, height, focal, focal, (width - 1) / 2.0, (height - 1) / 2.0,
                      np.stack([right, down, forward]), position)

    def pixel_rays(self) -> np.ndarray:
        """World directions through every pixel centre as components (3, H, W) float32, with
        camera-z component 1 (t = depth)."""
        u = ((np.arange(self.width, dtype=np.float32) - self.cx) / self.fx)[None, :]
        v = ((np.arange(self.height, dtype=np.float32) - self.cy) / self.fy)[:, None]
        r = self.rotation.astype(np.float32)
        # camera -> world: d = R^T (u, v, 1)
        return np.stack([r[0, i] * u + r[1, i] * v + r[2, i] for i in range(3)])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points (N, 3) -> pixel coordinates (N, 2) (x, y) and depths (N,)."""
        cam = (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation.T
        depth = cam[:, 2]
        safe = np.where(np.abs(depth) < _EPS, _EPS, depth)
        uv = np.stack([self.fx * cam[:, 0] / safe + self.cx, self.fy * cam[:, 1] / safe + self.cy], axis=1)
        return uv, depth

    def pixel_box(self, corners: np.ndarray, near: float = 0.02) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (x0, y0, x1, y1), exclusive, that holds the projection of a convex
        solid inside the box with these 8 corners (ordered as ``Shape.corners``); None when it
        is behind the camera or off the image."""
        depth = (np.asarray(corners, np.float64) - self.position) @ self.rotation[2]
        if np.all(depth <= near):
            return None
        points = corners[depth > near]
        if len(points) < len(corners):
            # Straddles the camera plane: clip the box's 12 edges (corner indices differing in
            # one bit) at the near plane, so the bound stays tight for an arm reaching past.
            edges = [(i, j) for i in range(8) for j in (i | 1, i | 2, i | 4) if j != i]
            cut = [corners[i] + (near - depth[i]) / (depth[j] - depth[i]) * (corners[j] - corners[i])
                   for i, j in edges if (depth[i] > near) != (depth[j] > near)]
            points = np.concatenate([points, np.array(cut)])
        uv, _ = self.project(points)
        x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def scaled(self, factor: int) -> "Camera":
        """The same camera with an image ``factor`` times smaller (pixel centres kept aligned)."""
        return Camera(self.width // factor, self.height // factor, self.fx / factor, self.fy / factor,
                      (self.cx + 0.5) / factor - 0.5, (self.cy + 0.5) / factor - 0.5, self.rotation, self.position)


@dataclass(frozen=True)
class Shape:
    """Base: a solid with a centre (bottom centre for boxes/cylinders), yaw, and size."""

    kind: str  # "box" | "cylinder" | "ellipsoid"
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # box: half-extents; cylinder: (radius, radius, height); ellipsoid: radii
    yaw: float = 0.0  # turn about the world z axis
    tilt: float = 0.0  # turn about the local y axis before the yaw (an arm reaching down)

    def _frame(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        yaw = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)
        if self.tilt == 0.0:
            return np.array(self.center, dtype=np.float32), yaw
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        tilt = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)
        return np.array(self.center, dtype=np.float32), yaw @ tilt

    def corners(self) -> np.ndarray:
        """(8, 3) world corners of a box that encloses the shape."""
        a, b, h = self.size
        if self.kind == "box":
            zs = (0.0, 2 * h)
        elif self.kind == "cylinder":
            zs = (0.0, h)
        else:
            zs = (-h, h)
        local = np.array([[x, y, z] for x in (-a, a) for y in (-b, b) for z in zs], dtype=np.float32)
        origin, rot = self._frame()
        return local @ rot.T + origin

    def intersect(self, origin: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """First-hit distance of rays ``origin`` (3,) + t * (dx, dy, dz), t > 0.

        dx, dy, dz: ray direction components, arrays of any one shape S (e.g. (h, w) of a pixel
        rectangle; component arrays keep the arithmetic contiguous). Returns t (S) float32, inf
        where the ray misses.
        """
        o, (lx, ly, lz) = self._local_rays(origin, dx, dy, dz)
        if self.kind == "box":
            return _box(o, lx, ly, lz, self.size)
        if self.kind == "cylinder":
            return _cylinder(o, lx, ly, lz, self.size[0], self.size[2])
        if self.kind == "ellipsoid":
            return _ellipsoid(o, lx, ly, lz, np.array(self.size, np.float32))
        raise ValueError(f"unknown shape kind {self.kind!r}")

    def surface(self, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At hits ``origin + t * dirs`` (dirs (N, 3), t (N,) finite): world normals (N, 3) and
        points in the shape's own frame (N, 3), which texture the surface."""
        center, rot = self._frame()
        rel = (np.asarray(origin, np.float32) - center) + t[:, None] * dirs
        # R^T (p - c) per component: small (N, 3) @ (3, 3) products are slow through BLAS
        local = np.stack([rel[:, 0] * rot[0, k] + rel[:, 1] * rot[1, k] + rel[:, 2] * rot[2, k]
                          for k in range(3)], axis=1)
        a, b, h = (np.float32(v) for v in self.size)
        if self.kind == "box":
            scaled = (local - np.array([0, 0, h], np.float32)) / np.array([a, b, h], np.float32)
            axis = np.argmax(np.abs(scaled), axis=1)
            normal = np.zeros_like(local)
            rows = np.arange(len(local))
            normal[rows, axis] = np.sign(scaled[rows, axis])
        elif self.kind == "cylinder":
            top = local[:, 2] >= h - 1e-4
            normal = np.stack([local[:, 0] / a, local[:, 1] / a, np.zeros_like(local[:, 0])], axis=1)
            normal[top] = (0.0, 0.0, 1.0)
        else:
            normal = local / (np.array([a, b, h], np.float32) ** 2)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), _EPS)
        world = np.stack([normal[:, 0] * rot[k, 0] + normal[:, 1] * rot[k, 1] + normal[:, 2] * rot[k, 2]
                          for k in range(3)], axis=1)
        return world, local

    def _local_rays(self, origin, dx, dy, dz):
        center, rot = self._frame()
        o = (np.asarray(origin, np.float32) - center) @ rot  # world -> local: R^T (p - c)
        # local d = R^T d, written per component
        lx = dx * rot[0, 0] + dy * rot[1, 0] + dz * rot[2, 0]
        ly = dx * rot[0, 1] + dy * rot[1, 1] + dz * rot[2, 1]
        lz = dz * rot[2, 2] if self.tilt == 0.0 else dx * rot[0, 2] + dy * rot[1, 2] + dz * rot[2, 2]
        return o, (lx, ly, lz)


def _slab(o: float, d: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.float32(1.0) / d
        t1, t2 = (lo - o) * inv, (hi - o) * inv
    return np.fmin(t1, t2), np.fmax(t1, t2)


def _box(o: np.ndarray, dx, dy, dz, half: tuple[float, float, float]) -> np.ndarray:
    # Local box spans x, y in [-a, a], [-b, b] and z in [0, 2c] (it stands on its base).
    near, far = _slab(o[0], dx, -half[0], half[0])
    for oi, d, lo, hi in ((o[1], dy, -half[1], half[1]), (o[2], dz, 0.0, 2 * half[2])):
        n, f = _slab(oi, d, lo, hi)
        near, far = np.fmax(near, n), np.fmin(far, f)
    hit = (near <= far) & (near > _EPS)
    return np.where(hit, near, np.float32(np.inf)).astype(np.float32, copy=False)


def _cylinder(o: np.ndarray, dx, dy, dz, radius: float, height: float) -> np.ndarray:
    # Side x^2 + y^2 = r^2 for 0 <= z <= h, closed by the top disc z = h (the bottom rests on a surface).
    a = dx * dx + dy * dy
    b = o[0] * dx + o[1] * dy
    c = o[0] ** 2 + o[1] ** 2 - radius**2
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
        z_side = o[2] + t_side * dz
        side_ok = (disc >= 0) & (a > _EPS) & (t_side > _EPS) & (z_side >= 0) & (z_side <= height)
        t_top = (height - o[2]) / dz
        xt, yt = o[0] + t_top * dx, o[1] + t_top * dy
        top_ok = (t_top > _EPS) & (xt * xt + yt * yt <= radius**2)
    inf = np.float32(np.inf)
    return np.minimum(np.where(side_ok, t_side, inf), np.where(top_ok, t_top, inf)).astype(np.float32, copy=False)


def _ellipsoid(o: np.ndarray, dx, dy, dz, radii: np.ndarray) -> np.ndarray:
    # Scale to the unit sphere, solve |o' + t d'|^2 = 1, keep the near root in front of the camera.
    os_ = o / radii
    sx, sy, sz = dx / radii[0], dy / radii[1], dz / radii[2]
    a = sx * sx + sy * sy + sz * sz
    b = sx * os_[0] + sy * os_[1] + sz * os_[2]
    c = float(os_ @ os_) - 1.0
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.float32(np.inf)).astype(np.float32, copy=False)


def room_hit(origin: np.ndarray, dirs: tuple[np.ndarray, np.ndarray, np.ndarray], lo,
             hi) -> tuple[np.ndarray, np.ndarray]:
    """Rays from inside an axis-aligned room box [lo, hi] (direction components, each (N,)):
    exit distance t (N,) and wall index (N,) int8: 0/1 x-, x+ walls, 2/3 y-, y+ walls,
    4 floor, 5 ceiling."""
    best = np.full(dirs[0].shape, np.inf, np.float32)
    wall = np.zeros(dirs[0].shape, np.int8)
    for axis, d in enumerate(dirs):
        with np.errstate(divide="ignore", invalid="ignore"):
            # leave through the high wall when moving up the axis, else through the low one
            bound = np.where(d > 0, np.float32(hi[axis]), np.float32(lo[axis]))
            exit_t = (bound - origin[axis]) / d
        closer = (exit_t < best) & (d != 0)
        best[closer] = exit_t[closer]
        wall[closer] = 2 * axis + (d[closer] > 0)
    return best, wall

"""Random tabletop scenes for the synthetic two-camera generator: what is where, not pixels.

A take is a room with a table (z = 0 is its top), 4-8 annotated objects on it (boxes,
cylinders, discs, spheres, ellipsoids with flat, striped, checked or blotchy surfaces, some
sharing a colour or a shape on purpose), a few unannotated furniture pieces, a fixed exo
camera a couple of metres away, and a person at the table's near edge whose head carries the
ego camera. Per frame the head moves and looks at another part of the table, and an arm may
reach into the scene; the person's body is seen by the exo camera only.

Everything is drawn from one ``numpy.random.Generator``: the same seed gives the same take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synth_geometry import Camera, Shape

EGO_SIZE = (704, 704)  # (H, W), as the processed Ego-Exo4D ego frames
EXO_SIZE = (540, 960)  # (H, W), as the processed exo frames
TABLE_HEIGHT = 0.75

# name -> sRGB 0..255
PALETTE = {
    "red": (200, 40, 40), "green": (50, 150, 60), "blue": (40, 80, 190), "yellow": (230, 200, 40),
    "orange": (235, 120, 30), "purple": (120, 60, 160), "white": (225, 225, 218), "black": (38, 38, 40),
    "brown": (125, 82, 45), "pink": (230, 130, 170), "cyan": (40, 180, 200), "gray": (130, 130, 128),
}
FLOORS = ((150, 120, 90), (110, 110, 115), (170, 160, 140), (95, 75, 60), (140, 140, 130))
OBJECT_KINDS = ("box", "cylinder", "disc", "sphere", "ellipsoid")
OBJECT_TEXTURES = ("flat", "flat", "stripes", "checker", "noise")


@dataclass(frozen=True)
class Material:
    """Surface look. Colours are linear RGB in [0, 1]; texture mixes ``color`` and ``color2``.

    texture: "flat" | "stripes" | "checker" | "noise" | "wood" | "tiles"; ``frequency`` in
    cycles per metre; ``contrast`` in [0, 1]; ``axes`` (3, 3) unit directions and ``phases`` (3,)
    parameterise stripes, wood grain and noise.
    """

    color: tuple[float, float, float]
    color2: tuple[float, float, float]
    texture: str = "flat"
    frequency: float = 20.0
    contrast: float = 0.5
    axes: tuple = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    phases: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SceneObject:
    """A named solid and its material."""

    name: str
    shape: Shape
    material: Material


@dataclass(frozen=True)
class CameraResponse:
    """How a camera turns light into pixels: exposure gain, white-balance gains (3,), blur
    sigma (px), noise sigma (0-255 units) and vignetting strength."""

    exposure: float
    white_balance: tuple[float, float, float]
    blur_sigma: float
    noise_sigma: float
    vignetting: float


@dataclass(frozen=True)
class Scene:
    """One take's world. ``objects`` are annotated; ``props`` (table, furniture) are not."""

    objects: tuple[SceneObject, ...]
    props: tuple[SceneObject, ...]
    room_lo: tuple[float, float, float]
    room_hi: tuple[float, float, float]
    walls: tuple[Material, ...]  # x-, x+, y-, y+, floor, ceiling
    light: tuple[float, float, float]  # unit direction towards the light
    ambient: float
    exo_camera: Camera
    ego_response: CameraResponse
    exo_response: CameraResponse
    table_half: tuple[float, float]
    person: dict  # trajectory parameters of the ego wearer


def srgb_to_linear(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB 0..255 -> linear 0..1 (gamma 2, the inverse of what ``develop`` applies)."""
    return tuple(float((c / 255.0) ** 2) for c in rgb)


def _jitter(rng: np.random.Generator, rgb: tuple[int, ...], amount: float = 12) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in rgb)


def _unit(rng: np.random.Generator) -> tuple[float, float, float]:
    v = rng.normal(size=3)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def random_material(rng: np.random.Generator, rgb: tuple[int, int, int], texture: str, frequency: float,
                    contrast: float) -> Material:
    """A material of base colour ``rgb`` whose second colour is a darker or lighter shade."""
    shade = rng.choice([0.45, 0.6, 1.5]) if texture != "flat" else 1.0
    rgb2 = tuple(int(np.clip(c * shade + rng.normal(0, 20), 0, 255)) for c in rgb)
    return Material(
        srgb_to_linear(_jitter(rng, rgb)), srgb_to_linear(rgb2), texture, frequency, contrast,
        tuple(_unit(rng) for _ in range(3)), tuple(float(p) for p in rng.uniform(0, 2 * np.pi, 3)),
    )


def _object_shape(rng: np.random.Generator, kind: str, xy: tuple[float, float], size=None) -> Shape:
    yaw = float(rng.uniform(0, np.pi))
    if kind == "box":
        size = size or (rng.uniform(0.03, 0.09), rng.uniform(0.03, 0.08), rng.uniform(0.02, 0.12))
        return Shape("box", (xy[0], xy[1], 0.0), tuple(map(float, size)), yaw)
    if kind == "cylinder":
        r = rng.uniform(0.03, 0.06)
        size = size or (r, r, rng.uniform(0.06, 0.24))
        return Shape("cylinder", (xy[0], xy[1], 0.0), tuple(map(float, size)), yaw)
    if kind == "disc":
        r = rng.uniform(0.07, 0.12)
        size = size or (r, r, rng.uniform(0.008, 0.02))
        return Shape("cylinder", (xy[0], xy[1], 0.0), tuple(map(float, size)), yaw)
    if kind == "sphere":
        r = rng.uniform(0.03, 0.065)
        size = size or (r, r, r)
        return Shape("ellipsoid", (xy[0], xy[1], float(size[2])), tuple(map(float, size)), yaw)
    size = size or (rng.uniform(0.05, 0.10), rng.uniform(0.03, 0.06), rng.uniform(0.025, 0.05))
    return Shape("ellipsoid", (xy[0], xy[1], float(size[2])), tuple(map(float, size)), yaw)


def _footprint(shape: Shape) -> float:
    a, b, _ = shape.size
    return float(np.hypot(a, b)) if shape.kind == "box" else float(max(a, b))


def _free_spot(rng: np.random.Generator, table_half: tuple[float, float], placed: list[Shape], make) -> Shape | None:
    """A shape from ``make(xy)`` at a random table spot clear of ``placed`` (None if none found)."""
    for _attempt in range(60):
        xy = (rng.uniform(-table_half[0] + 0.1, table_half[0] - 0.1),
              rng.uniform(-table_half[1] + 0.1, table_half[1] - 0.1))
        shape = make(xy)
        if all(np.hypot(xy[0] - o.center[0], xy[1] - o.center[1]) > _footprint(shape) + _footprint(o) + 0.02
               for o in placed):
            return shape
    return None


def sample_clutter(rng: np.random.Generator, table_half: tuple[float, float], count: int) -> list[SceneObject]:
    """Tall unannotated things on the table (bottles, packs) that hide objects from some views."""
    clutter: list[SceneObject] = []
    for i in range(count):
        height = rng.uniform(0.1, 0.17)
        if rng.random() < 0.5:
            make = lambda xy: Shape("box", (xy[0], xy[1], 0.0),  # noqa: E731
                                    (rng.uniform(0.05, 0.1), rng.uniform(0.03, 0.06), height), rng.uniform(0, np.pi))
        else:
            make = lambda xy: Shape("cylinder", (xy[0], xy[1], 0.0), (r := rng.uniform(0.04, 0.07), r, 2 * height))
        shape = _free_spot(rng, table_half, [c.shape for c in clutter], make)
        if shape is not None:
            rgb = _jitter(rng, PALETTE[str(rng.choice(["white", "gray", "brown", "black"]))], 20)
            clutter.append(SceneObject(f"clutter {i}", shape, random_material(rng, rgb, "noise", 8.0, 0.2)))
    return clutter


def sample_objects(rng: np.random.Generator, table_half: tuple[float, float], count: int,
                   placed: list[Shape] = ()) -> list[SceneObject]:
    """``count`` (or fewer, if the table is full) non-overlapping objects with unique names,
    clear of the ``placed`` shapes.

    About a third reuse an earlier object's colour with another shape and a fifth reuse an
    earlier shape and size in another colour: distractors that appearance alone cannot settle.
    """
    objects: list[SceneObject] = []
    names: set[str] = set()
    for _ in range(count):
        kind, color, size = str(rng.choice(OBJECT_KINDS)), str(rng.choice(list(PALETTE))), None
        roll = rng.random()
        if objects and roll < 0.33:
            color = objects[rng.integers(len(objects))].name.split(" ")[0]
            kind = str(rng.choice([k for k in OBJECT_KINDS if k != kind]))
        elif objects and roll < 0.53:
            twin = objects[rng.integers(len(objects))]
            kind, size = twin.name.split(" ")[1], twin.shape.size
            color = str(rng.choice([c for c in PALETTE if c != twin.name.split(" ")[0]]))
        shape = _free_spot(rng, table_half, list(placed) + [o.shape for o in objects],
                           lambda xy: _object_shape(rng, kind, xy, size))
        if shape is None:
            continue  # no free spot left
        texture = str(rng.choice(OBJECT_TEXTURES))
        material = random_material(rng, PALETTE[color], texture, float(rng.uniform(15, 40)),
                                   float(rng.uniform(0.3, 0.55)))
        name, k = f"{color} {kind}", 2
        while name in names:
            name, k = f"{color} {kind} {k}", k + 1
        names.add(name)
        objects.append(SceneObject(name, shape, material))
    return objects


def _props(rng: np.random.Generator, table_half: tuple[float, float], room_hi: np.ndarray) -> list[SceneObject]:
    wood = random_material(rng, _jitter(rng, (150, 105, 65), 25), "wood", float(rng.uniform(6, 12)), 0.35)
    table = Shape("box", (0.0, 0.0, -0.03), (table_half[0], table_half[1], 0.015))
    props = [SceneObject("table", table, wood)]
    leg_z = -TABLE_HEIGHT
    for sx in (-1, 1):
        for sy in (-1, 1):
            leg = Shape("box", (sx * (table_half[0] - 0.05), sy * (table_half[1] - 0.05), leg_z),
                        (0.025, 0.025, (TABLE_HEIGHT - 0.03) / 2))
            props.append(SceneObject("table leg", leg, wood))
    for i in range(int(rng.integers(2, 5))):  # cabinets and shelves along the walls
        wall = rng.integers(4)
        w, d, h = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.35), rng.uniform(0.4, 1.6)
        along = rng.uniform(-1.5, 1.5)
        spots = [(-room_hi[0] + d, along), (room_hi[0] - d, along), (along, -room_hi[1] + d), (along, room_hi[1] - d)]
        x, y = spots[wall]
        yaw = 0.0 if wall >= 2 else np.pi / 2
        rgb = _jitter(rng, PALETTE[str(rng.choice(["white", "gray", "brown", "blue", "green"]))], 20)
        texture = str(rng.choice(["flat", "wood", "noise"]))
        props.append(SceneObject(f"furniture {i}", Shape("box", (x, y, -TABLE_HEIGHT), (w, d, h / 2), yaw),
                                 random_material(rng, rgb, texture, float(rng.uniform(4, 10)), 0.25)))
    return props


def _response(rng: np.random.Generator, vignetting: float) -> CameraResponse:
    wb = rng.uniform(0.85, 1.15, 3)
    wb[1] = 1.0
    return CameraResponse(float(rng.uniform(0.8, 1.25)), tuple(map(float, wb)), float(rng.uniform(0.4, 0.9)),
                          float(rng.uniform(1.5, 4.0)), vignetting)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one take's scene (objects, room, lights, exo camera, ego wearer's motion)."""
    table_half = (float(rng.uniform(0.55, 0.8)), float(rng.uniform(0.38, 0.5)))
    room_hi = np.array([rng.uniform(2.3, 2.8), rng.uniform(2.3, 2.8), rng.uniform(1.7, 2.0)])
    room_lo = np.array([-room_hi[0], -room_hi[1], -TABLE_HEIGHT])
    clutter = sample_clutter(rng, table_half, int(rng.integers(2, 5)))
    objects = sample_objects(rng, table_half, int(rng.integers(4, 9)), [c.shape for c in clutter])
    walls = tuple(
        random_material(rng, _jitter(rng, base, 18), texture, freq, contrast)
        for base, texture, freq, contrast in [
            ((205, 200, 190), "noise", 3.0, 0.15), ((200, 205, 195), "noise", 3.0, 0.15),
            ((195, 195, 200), "noise", 3.0, 0.15), ((210, 200, 185), "noise", 3.0, 0.15),
            (FLOORS[rng.integers(len(FLOORS))], str(rng.choice(["tiles", "wood"])), float(rng.uniform(1.5, 3.0)), 0.4),
            ((235, 235, 230), "flat", 1.0, 0.0),
        ]
    )
    # half the exo cameras look over the wearer's shoulder, where the body hides things
    azimuth = rng.uniform(-2.3, -0.85) if rng.random() < 0.5 else rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(1.6, 2.1)
    exo_position = np.array([distance * np.cos(azimuth), distance * np.sin(azimuth), rng.uniform(0.45, 1.1)])
    exo_target = np.array([rng.uniform(-0.25, 0.25), rng.uniform(-0.15, 0.15), 0.0])
    exo_camera = Camera.looking_at(exo_position, exo_target, EXO_SIZE[1], EXO_SIZE[0], float(rng.uniform(42, 58)),
                                   float(rng.normal(0, 1.5)))
    light = np.array([*(0.6 * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])), 1.0])
    person = {
        "x0": float(rng.uniform(-0.2, 0.2)), "x_amp": float(rng.uniform(0.1, 0.3)),
        "y": float(-table_half[1] - rng.uniform(0.1, 0.2)), "z": float(rng.uniform(0.6, 0.8)),
        "freq": rng.uniform(0.4, 1.2, 4).tolist(), "phase": rng.uniform(0, 2 * np.pi, 4).tolist(),
        "hfov": float(rng.uniform(68, 80)), "reach": float(rng.uniform(0.4, 0.8)),
        "shirt": srgb_to_linear(_jitter(rng, PALETTE[str(rng.choice(["blue", "gray", "black", "green", "red"]))], 20)),
        "skin": srgb_to_linear(_jitter(rng, (rng.integers(120, 225), 150, 120), 15)),
    }
    return Scene(
        tuple(objects), tuple(_props(rng, table_half, room_hi) + clutter), tuple(room_lo), tuple(room_hi), walls,
        tuple(light / np.linalg.norm(light)), float(rng.uniform(0.35, 0.5)), exo_camera,
        _response(rng, float(rng.uniform(0.25, 0.45))), _response(rng, 0.1), table_half, person,
    )


def ego_pose(scene: Scene, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Eye position and look-at point at take time ``t`` in [0, 1]: a head that sways along the
    table edge and looks at a wandering point on the table."""
    p, (tx, ty) = scene.person, scene.table_half
    f, ph = p["freq"], p["phase"]
    eye = np.array([p["x0"] + p["x_amp"] * np.sin(2 * np.pi * f[0] * t + ph[0]), p["y"],
                    p["z"] + 0.04 * np.sin(2 * np.pi * f[1] * t + ph[1])])
    target = np.array([np.clip(eye[0] + 0.6 * tx * np.sin(2 * np.pi * f[2] * t + ph[2]), -tx, tx),
                       ty * (0.65 * np.sin(2 * np.pi * f[3] * t + ph[3]) - 0.15), 0.0])
    return eye, target


def ego_camera(scene: Scene, t: float, rng: np.random.Generator) -> Camera:
    """The head-mounted camera at take time ``t`` (small random roll per frame)."""
    eye, target = ego_pose(scene, t)
    return Camera.looking_at(eye, target, EGO_SIZE[1], EGO_SIZE[0], scene.person["hfov"], float(rng.normal(0, 4)))


def person_shapes(scene: Scene, t: float, rng: np.random.Generator) -> tuple[list[SceneObject], list[SceneObject]]:
    """The wearer at time ``t``: (body parts seen only by the exo camera, arm seen by both).

    The arm reaches from the right or left shoulder towards the table near the gaze point in
    about ``person["reach"]`` of the frames, occluding objects in either view.
    """
    p = scene.person
    eye, target = ego_pose(scene, t)
    head_center = eye + np.array([0.0, -0.08, 0.02])
    shirt = Material(p["shirt"], p["shirt"], "flat")
    skin = Material(p["skin"], p["skin"], "flat")
    body = [
        SceneObject("head", Shape("ellipsoid", tuple(head_center), (0.085, 0.1, 0.11)), skin),
        SceneObject("torso", Shape("ellipsoid", (eye[0], eye[1] - 0.12, eye[2] - 0.42), (0.2, 0.12, 0.32)), shirt),
        SceneObject("legs", Shape("box", (eye[0], eye[1] - 0.12, -TABLE_HEIGHT),
                                  (0.15, 0.1, (eye[2] - 0.7 + TABLE_HEIGHT) / 2)), shirt),
    ]
    arms = []
    if rng.random() < p["reach"]:
        side = rng.choice([-1.0, 1.0])
        shoulder = np.array([eye[0] + side * 0.19, eye[1] - 0.08, eye[2] - 0.22])
        hand = np.array([target[0] + rng.uniform(-0.15, 0.15), target[1] + rng.uniform(-0.2, 0.05), 0.05])
        arm = hand - shoulder
        length = float(np.linalg.norm(arm))
        yaw = float(np.arctan2(arm[1], arm[0]))
        tilt = float(np.arctan2(-arm[2], np.hypot(arm[0], arm[1])))
        mid = (shoulder + hand) / 2
        arms.append(SceneObject("arm", Shape("ellipsoid", tuple(mid), (length / 2, 0.055, 0.05), yaw, tilt), shirt))
        arms.append(SceneObject("hand", Shape("ellipsoid", tuple(hand), (0.06, 0.045, 0.03), yaw), skin))
    return body, arms

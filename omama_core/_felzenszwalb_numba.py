"""numba kernels of omama_core.felzenszwalb (imported by it on first use, so that importing
omama_core or omama_core.regions does not import numba).

The image grid is an 8-connected graph over pixels p = row * width + col. Its edges are
numbered as scikit-image numbers them, four blocks one after the other:
    right   (H, W-1):   (r, c+1) - (r, c)
    down    (H-1, W):   (r+1, c) - (r, c)
    dright  (H-1, W-1): (r+1, c+1) - (r, c)
    uright  (H-1, W-1): (r, c+1) - (r+1, c)
each block in raster order of its (r, c). An edge's two pixels are computed from its number,
so no (E, 2) array of pixel pairs is built or gathered.

The union-find here (path halving, union by size) is not scikit-image's (root = smallest
pixel, no compression), but every merge decision reads only component-level quantities (is
it one component, its size, its internal cost), so the partition is the same; the final
numbering by first pixel in raster order then gives the same labels (a component's first
pixel is the root scikit-image ends with, and it numbers the components by root).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _edge_pixels(k: int, height: int, width: int) -> tuple[int, int]:
    """Pixel indices (p, q) of edge number k (see the module docstring)."""
    w1 = width - 1
    n_right = height * w1
    if k < n_right:
        r = k // w1
        p = r * width + (k - r * w1)
        return p + 1, p
    k -= n_right
    n_down = (height - 1) * width
    if k < n_down:  # numbered like the upper pixel itself
        return k + width, k
    k -= n_down
    n_diag = (height - 1) * w1
    if k < n_diag:
        r = k // w1
        p = r * width + (k - r * w1)
        return p + width + 1, p
    k -= n_diag
    r = k // w1
    p = r * width + (k - r * w1)
    return p + 1, p + width


@numba.njit(cache=True, nogil=True, inline="always")
def _find(parent: np.ndarray, p: int) -> int:
    """Root of p's tree, halving the path on the way (any root will do: see the module
    docstring)."""
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@numba.njit(cache=True, nogil=True, inline="always")
def _union(parent: np.ndarray, size: np.ndarray, a: int, b: int) -> int:
    """Join roots a != b (smaller tree under the larger); returns the new root, which carries
    the summed size."""
    if size[a] < size[b]:
        a, b = b, a
    parent[b] = a
    size[a] += size[b]
    return a


@numba.njit(cache=True, nogil=True)
def segment(order: np.ndarray, sorted_costs: np.ndarray, height: int, width: int, scale: float,
            min_size: int) -> np.ndarray:
    """Felzenszwalb's merge over the edges numbered `order` (E,) int64 (ascending cost),
    sorted_costs (E,) float64 their costs, scale already divided by 255 -> (H, W) int64
    labels 0..L-1 numbered by their first pixel in raster order."""
    n = height * width
    parent = np.arange(n, dtype=np.int32)
    size = np.ones(n, dtype=np.int32)
    internal = np.zeros(n)  # cost of the last merge into each component (at its root)
    rejected = np.empty(order.size, dtype=np.int64)  # edges between two components after this pass
    n_rejected = 0
    for i in range(order.size):
        k = order[i]
        p, q = _edge_pixels(k, height, width)
        a = _find(parent, p)
        b = _find(parent, q)
        if a == b:
            continue
        # scikit-image keeps the two thresholds in float32; the cost (float64) is compared with
        # the smaller of them, and the rounding can decide a merge
        tau_a = np.float32(internal[a] + scale / size[a])
        tau_b = np.float32(internal[b] + scale / size[b])
        cost = sorted_costs[i]
        if cost < min(tau_a, tau_b):
            internal[_union(parent, size, a, b)] = cost
        else:
            rejected[n_rejected] = k
            n_rejected += 1
    # small components: merged along the edges in the same order, whatever the cost; an edge
    # inside one component after the first pass stays inside one, so only the rejected ones
    for i in range(n_rejected):
        p, q = _edge_pixels(rejected[i], height, width)
        a = _find(parent, p)
        b = _find(parent, q)
        if a != b and (size[a] < min_size or size[b] < min_size):
            _union(parent, size, a, b)
    labels = np.empty(n, dtype=np.int64)
    label_of_root = np.full(n, -1, dtype=np.int64)
    count = 0
    for p in range(n):
        r = _find(parent, p)
        if label_of_root[r] < 0:
            label_of_root[r] = count
            count += 1
        labels[p] = label_of_root[r]
    return labels.reshape(height, width)


@numba.njit(cache=True, nogil=True)
def sort_distinct(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Stable ascending sort of costs (E,) float64, all >= +0.0 -> (order (E,) int64, sorted
    costs (E,) float64, whether it decides the merges alone: no two positive costs equal).

    LSD radix sort of the costs' bits (for non-negative floats the bit patterns order as the
    values), 11 bits a pass, passes where every key has the same digit skipped."""
    e = costs.size
    keys = costs.view(np.uint64).copy()
    order = np.arange(e)
    keys_out = np.empty_like(keys)
    order_out = np.empty_like(order)
    bits, buckets, passes = 11, 1 << 11, 6
    counts = np.zeros((passes, buckets), dtype=np.int64)  # every pass's histogram, in one read
    for i in range(e):
        key = keys[i]
        for t in range(passes):
            counts[t, (key >> np.uint64(t * bits)) & np.uint64(buckets - 1)] += 1
    for t in range(passes):
        shift = np.uint64(t * bits)
        if e == 0 or counts[t].max() == e:
            continue  # one digit for all: this pass would not move anything
        total = 0
        for d in range(buckets):
            c = counts[t, d]
            counts[t, d] = total
            total += c
        for i in range(e):
            d = (keys[i] >> shift) & np.uint64(buckets - 1)
            j = counts[t, d]
            counts[t, d] = j + 1
            keys_out[j] = keys[i]
            order_out[j] = order[i]
        keys, keys_out = keys_out, keys
        order, order_out = order_out, order
    distinct = e == 0 or keys[e - 1] >> np.uint64(63) == 0  # a -0.0 would sort last
    for i in range(1, e):
        if keys[i] == keys[i - 1] and keys[i] != 0:
            distinct = False
            break
    return order, keys.view(np.float64), distinct

"""Checking the queries of one set against its source image (pure: no ROS needed).

Used by the node for every set it answers and by `omama bag eval` on recorded sets, so both
accept and refuse exactly the same queries.
"""

from __future__ import annotations

import numpy as np

from . import conversions


def query_masks(queries, shape: tuple[int, int], source_view: int, direction: str) -> tuple[list, dict[int, str]]:
    """Per query of a QueryArray: its (H, W) bool mask (None when invalid) and, for the
    invalid ones, why. `shape` is the source image's (H, W); `source_view` the view the
    node's direction expects (Query.VIEW_EGO for ego2exo)."""
    masks: list[np.ndarray | None] = []
    problems: dict[int, str] = {}
    array_stamp = conversions.stamp_to_ns(queries.header.stamp)
    for index, query in enumerate(queries.queries):
        mask, stamp = None, conversions.stamp_to_ns(query.header.stamp)
        try:
            if query.source_view != source_view:
                raise ValueError(f"source_view {query.source_view} does not fit direction {direction}")
            if stamp not in (0, array_stamp):
                raise ValueError("its stamp differs from the QueryArray's")
            mask = conversions.mask_to_bool(query.mask)
            if mask.shape != shape:
                raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but its source image is "
                                 f"{shape[1]}x{shape[0]} (WxH)")
        except ValueError as error:  # ConversionError is a ValueError too
            problems[index], mask = str(error), None
        masks.append(mask)
    return masks, problems

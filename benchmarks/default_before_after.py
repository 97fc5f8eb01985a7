"""The `default` config before and after the proposals work of issue 14, in one process.

"before": the previous classical proposals (the one-pair-at-a-time hierarchy kept in
tests/test_proposals.py) at the previous settings (max_side 960, segment_scale 50), run
after the backbones; "serial": today's proposals, still after the backbones
(proposals.concurrent false); "after": `Matcher.from_config("default")` as it ships (the
proposals in a worker thread beside the backbones). Calls alternate (before, serial, after,
...) on the same synthetic frame pair (ego 704x704 -> exo 960x540, 4 queries) so that a
noisy, shared machine slows all alike; prints medians per stage and the ratios.

    python benchmarks/default_before_after.py --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from omama_core import Matcher  # noqa: E402
from omama_core.benchmark import bench_inputs  # noqa: E402
from omama_core.proposals import Proposals  # noqa: E402
from test_proposals import reference_proposals  # noqa: E402

BEFORE = {"proposals.max_side": 960, "proposals.segment_scale": 50}


class PreviousProposals:
    """The previous ClassicalProposals, from the test's reference copy."""

    def __init__(self, config):
        self.settings = dict(segment_scale=config.segment_scale, max_masks=config.max_masks,
                             min_area_frac=config.min_area_frac, max_area_frac=config.max_area_frac,
                             max_side=config.max_side)

    def __call__(self, image: np.ndarray) -> Proposals:
        found = reference_proposals(image, **self.settings)
        if found is None:
            return Proposals.empty(*image.shape[:2])
        labels, members, boxes = found
        return Proposals(boxes, np.ones(len(boxes), np.float32), labels=labels, members=members)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--queries", type=int, default=4)
    args = parser.parse_args()
    before = Matcher.from_config("default", device="cpu", overrides=BEFORE)
    before.proposals = PreviousProposals(before.config.proposals)  # not ClassicalProposals: runs after the backbones
    matchers = {"before": before,
                "serial": Matcher.from_config("default", device="cpu", overrides={"proposals.concurrent": False}),
                "after": Matcher.from_config("default", device="cpu")}
    inputs = bench_inputs("ego2exo", args.queries)
    timings = {name: [] for name in matchers}
    for matcher in matchers.values():  # warm-up
        matcher.match(*inputs)
    for _ in range(args.repeat):
        for name, matcher in matchers.items():
            start = time.perf_counter()
            result = matcher.match(*inputs)[0]
            timings[name].append({**result.timings, "end_to_end": (time.perf_counter() - start) * 1000})
    for name, runs in timings.items():
        stages = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(name, " ".join(f"{key} {value:.0f}" for key, value in stages.items()))
    end_to_end = {name: statistics.median(r["end_to_end"] for r in runs) for name, runs in timings.items()}
    print(f"end to end: before {end_to_end['before']:.0f} ms, serial {end_to_end['serial']:.0f} ms, "
          f"after {end_to_end['after']:.0f} ms; after is {end_to_end['before'] / end_to_end['after']:.2f}x faster "
          f"than before and {end_to_end['serial'] / end_to_end['after']:.2f}x than serial "
          f"({args.repeat} alternating repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

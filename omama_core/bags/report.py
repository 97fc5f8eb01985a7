"""Problems, timing statistics and the summary table printed at the end of `omama bag`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

MAX_LISTED = 20


class Problems:
    """Problems by kind (all counted, the first MAX_LISTED kept with their message)."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.messages: list[str] = []

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.messages) < MAX_LISTED:
            self.messages.append(f"{kind}: {message}")

    def merged(self, reader) -> dict[str, Any]:
        """These problems and the reader's, as report fields."""
        counts = Counter(reader.counts) + self.counts
        return {"bag_problems": dict(counts), "problems": (reader.problems + self.messages)[:MAX_LISTED]}


def stats(values: list[float]) -> dict[str, Any]:
    """count, p50, p95, max and mean of `values` (milliseconds), rounded to 0.1."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None, "mean": None}
    array = np.asarray(values, float)
    return {"count": int(array.size), "p50": round(float(np.percentile(array, 50)), 1),
            "p95": round(float(np.percentile(array, 95)), 1), "max": round(float(array.max()), 1),
            "mean": round(float(array.mean()), 1)}


def summary_table(report: dict[str, Any]) -> str:
    """A short plain-text table of a bag evaluation's report (metrics.json)."""
    rows: list[tuple[str, str]] = [("mode", f"{report.get('mode')} ({report.get('direction')}, "
                                            f"{report.get('masks', 'candidate')} masks)")]
    metrics = report.get(report.get("direction", ""), {})
    if report.get("ground_truth") and metrics:
        for name in ("iou", "location_error", "contour_accuracy", "visibility_balanced_accuracy"):
            value = metrics.get(name)
            rows.append((name, "n/a" if value is None else f"{value:.4f}"))
        rows.append(("samples", f"{metrics['samples']} ({metrics['visible_in_target']} visible in the target; "
                                f"{metrics['answered']} answered, {metrics['unanswered']} unanswered = misses)"))
    else:
        rows.append(("ground truth", "none: latency and drops only"))
    for name in ("sets", "query_arrays", "answered_arrays", "dropped_arrays"):
        if report.get(name) is not None:
            rows.append((name.replace("_", " "), str(report[name])))
    for name in ("latency_ms", "processing_ms"):
        value = report.get(name)
        if value and value.get("count"):
            rows.append((name.replace("_", " "), f"p50 {value['p50']}  p95 {value['p95']}  max {value['max']}"))
    if report.get("throughput_hz") is not None:
        rows.append(("throughput", f"{report['throughput_hz']:.2f} answers/s (inputs {report.get('input_hz', 0):.2f}"
                                   " sets/s)"))
    if report.get("node_rss_mb"):
        rss = report["node_rss_mb"]
        rows.append(("node memory", f"RSS start {rss['start']} MB, peak {rss['peak']} MB, end {rss['end']} MB"))
    problems = report.get("bag_problems") or {}
    rows.append(("problems", ", ".join(f"{k} {v}" for k, v in sorted(problems.items())) or "none"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

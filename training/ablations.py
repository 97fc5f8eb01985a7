"""The publication's ablation rows, side by side on the same held-out data.

    .venv/bin/python training/ablations.py --train-data data/synth_train \
        --heldout-data data/synth_heldout --out runs/ablations [--epochs 3] [--recipe YAML]

Each row adds one ingredient to the previous one (k-NN needs no training), is trained on
--train-data with a synthetic recipe (default training/configs/synthetic_convnet.yaml, the
offline default's features; synthetic.yaml for the handcrafted ones) for --epochs, and
is scored on the held-out data's test split with the cached top-1 evaluation (IoU of the
chosen proposal, the proposals' oracle IoU, visibility balanced accuracy). Writes
ablations.json, ablations.md and ablations.png into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omama_core.config import load_config  # noqa: E402
from omama_core.data.cache import FeatureCache  # noqa: E402
from omama_core.data.egoexo import CorrespondenceDataset  # noqa: E402
from omama_core.directions import DIRECTIONS  # noqa: E402
from omama_core.modeling import load_head  # noqa: E402
from omama_core.training.config import load_train_config  # noqa: E402
from omama_core.training.loop import train, validate  # noqa: E402
from omama_core.training.pairs import CachedPairs  # noqa: E402

RECIPE = Path(__file__).parent / "configs" / "synthetic_convnet.yaml"
ROWS = [  # name, overrides of the recipe (None: no training)
    ("k-NN (no training)", None),
    ("+ contrastive loss", {"head.context": False, "head.cross_attention": False, "loss.negatives": "random",
                            "head.visibility": False}),
    ("+ context", {"head.context": True, "head.cross_attention": False, "loss.negatives": "random",
                   "head.visibility": False}),
    ("+ adjacent negatives", {"head.context": True, "head.cross_attention": False, "loss.negatives": "adjacent",
                              "head.visibility": False}),
    ("+ cross-attention", {"head.context": True, "head.cross_attention": True, "loss.negatives": "adjacent",
                           "head.visibility": False}),
    ("+ visibility (omama)", {"head.context": True, "head.cross_attention": True, "loss.negatives": "adjacent",
                              "head.visibility": True}),
]


def heldout_pairs(root: str, direction: str, matcher: str) -> CachedPairs:
    dataset = CorrespondenceDataset(root, "test", direction)
    cache = FeatureCache(root, load_config(matcher))
    cache.build([dataset], workers=2)
    return CachedPairs(dataset, cache, 1.0, 0, None, progress=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--heldout-data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--directions", default=",".join(DIRECTIONS))
    parser.add_argument("--recipe", default=str(RECIPE), help="training config the rows start from")
    parser.add_argument("--also-knn", default="", metavar="CONFIGS",
                        help="comma-separated matcher configs added as k-NN rows (other features), e.g. default,knn")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads((out / "ablations.json").read_text()) if (out / "ablations.json").is_file() else {}
    for direction in args.directions.split(","):
        base = load_train_config(args.recipe, {"direction": direction, "optim.epochs": args.epochs})
        pairs = heldout_pairs(args.heldout_data, direction, base.matcher)
        matcher = load_config(base.matcher)
        margin, part_margin = matcher.selection.whole_object_margin, matcher.selection.whole_object_part_margin  # every row chooses alike
        for name, overrides in ROWS:
            key = f"{direction}/{name}"
            if key in results:
                continue  # resumable: rows already measured are kept
            if overrides is None:
                metrics = validate(None, pairs, 24, torch.device("cpu"), matcher.visibility_threshold, margin,
                                   part_margin)
            else:
                config = load_train_config(args.recipe, {"direction": direction, "optim.epochs": args.epochs,
                                                         **overrides})
                run = out / f"{direction}_{len([k for k in results if k.startswith(direction)])}"
                train(config, args.train_data, str(run), device="cpu", progress=False)
                metrics = validate(load_head(str(run / "best.pt")), pairs, 24, torch.device("cpu"),
                                   whole_object_margin=margin, part_margin=part_margin)
            results[key] = metrics
            print(f"{key}: {json.dumps(metrics)}", flush=True)
            (out / "ablations.json").write_text(json.dumps(results, indent=2))
        for name in filter(None, args.also_knn.split(",")):
            key = f"{direction}/k-NN, {name} config"
            if key not in results:
                other = load_config(name)
                results[key] = validate(None, heldout_pairs(args.heldout_data, direction, name), 24, torch.device("cpu"),
                                        other.visibility_threshold, other.selection.whole_object_margin,
                                        other.selection.whole_object_part_margin)
                print(f"{key}: {json.dumps(results[key])}", flush=True)
                (out / "ablations.json").write_text(json.dumps(results, indent=2))
    write_table(results, out)
    return 0


def write_table(results: dict, out: Path) -> None:
    names = [name for name, _ in ROWS]
    names += sorted({key.split("/", 1)[1] for key in results} - set(names))  # the --also-knn rows
    lines = ["| row | Ego2Exo IoU | Exo2Ego IoU | Ego2Exo vis. BA | Exo2Ego vis. BA |", "| --- | --- | --- | --- | --- |"]
    for name in names:
        cells = [results.get(f"{d}/{name}", {}) for d in DIRECTIONS]
        lines.append(f"| {name} | " + " | ".join(f"{c['iou']:.3f}" if c else "-" for c in cells) + " | "
                     + " | ".join(f"{c['visibility_balanced_accuracy']:.3f}" if c else "-" for c in cells) + " |")
    oracle = [results.get(f"{d}/{names[0]}", {}).get("oracle_iou") for d in DIRECTIONS]
    lines.append("| oracle (best proposal) | " + " | ".join(f"{o:.3f}" if o else "-" for o in oracle) + " | | |")
    (out / "ablations.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.38
    for offset, direction in zip((-width / 2, width / 2), DIRECTIONS):
        values = [results.get(f"{direction}/{name}", {}).get("iou", 0) for name in names]
        ax.bar([i + offset for i in range(len(names))], values, width, label=direction)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("held-out IoU (top-1 proposal)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ablations.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

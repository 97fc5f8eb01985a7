"""Data: the Ego-Exo4D correspondence reader and the synthetic two-camera generator.

    from omama_core.data import CorrespondenceDataset, generate_take, render_pair
    dataset = CorrespondenceDataset("ROOT", split="test", direction="ego2exo")
    sample = dataset[0]          # Sample: images HxWx3 uint8 RGB, masks (H, W) bool

Both write/read the same processed layout, described in docs/data.md.
"""

from .annotations import TakeAnnotation, read_gt_file, read_processed_take, read_relations
from .egoexo import DIRECTIONS, CorrespondenceDataset, Sample, SampleRef
from .rle import decode_encoded_mask, decode_rle, encode_lzstring_mask, encode_rle
from .synth import FramePair, generate_take, render_pair, write_dataset

__all__ = [
    "CorrespondenceDataset", "DIRECTIONS", "FramePair", "Sample", "SampleRef", "TakeAnnotation",
    "decode_encoded_mask", "decode_rle", "encode_lzstring_mask", "encode_rle", "generate_take",
    "read_gt_file", "read_processed_take", "read_relations", "render_pair", "write_dataset",
]

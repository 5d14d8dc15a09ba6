"""Data layer: robust image decoding, unlabeled pools, segmentation datasets, array caches, dataset registry."""

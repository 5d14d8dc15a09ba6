"""Compact-set selection: patch proposal, embedding, hardness scores, selection, 2x2 mosaics, manifest, report."""

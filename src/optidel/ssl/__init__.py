"""Self-supervised pre-training: MAE and SimCLR on timm backbones, compute-matched, resumable, distributed."""

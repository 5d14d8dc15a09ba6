"""optidel: data-efficient self-supervised pre-training for medical imaging (OptiDEL)."""

__version__ = "0.1.0"

"""segtune: train, tune and inspect binary segmentation models for rare positives."""

__version__ = "0.1.0"

"""segtune: train, tune and inspect binary segmentation models for rare positives."""

__version__ = "0.2.0.dev0"

"""A trained model in use: ``segtune predict``, ``segtune evaluate``, ``segtune export``."""

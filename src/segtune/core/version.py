"""segtune's version: one place, read by records, exports and ``--version``."""

VERSION = "0.2.0.dev0"

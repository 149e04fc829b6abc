"""Studies: specs, exactly-once claims, workers, status."""

STORAGE_ENV = "SEGTUNE_STORAGE"  # a storage URL passed to workers without a command line

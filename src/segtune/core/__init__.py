"""The bottom layer: errors, typed configs, runtime, metrics, intervals and run records."""

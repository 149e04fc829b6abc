"""Studies: the spec, grid points and refinement, exactly-once claims, the sweep."""

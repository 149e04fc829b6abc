"""Analysis: a typed study summary read from run records, then tables, figures, report."""

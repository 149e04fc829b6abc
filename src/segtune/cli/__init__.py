"""The ``segtune`` command: argument parsing, printing and exit codes over the API."""

"""Pictures (pairs), pages (tiles), the decoded cache and the demo data."""

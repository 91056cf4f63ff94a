"""smsgw common code."""

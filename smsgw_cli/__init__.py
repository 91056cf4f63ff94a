"""The smsgw command line."""

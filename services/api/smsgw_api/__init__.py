"""smsgw FastAPI ingress."""

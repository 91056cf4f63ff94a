"""Logging and metrics helpers."""

from smsgw_shared.observability.health import HealthServer, readiness
from smsgw_shared.observability.logging import current_message_id, setup_logging

__all__ = ["HealthServer", "current_message_id", "readiness", "setup_logging"]

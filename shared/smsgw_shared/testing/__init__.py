"""Test helpers shared by every service's tests (a pytest plugin: `smsgw_shared.testing.plugin`).

Tests use the real RabbitMQ and PostgreSQL of the machine; each run gets its own namespace
and database, removed afterwards. A missing service fails the run with a clear message.
"""

from smsgw_shared.testing.helpers import free_port, wait_for

__all__ = ["free_port", "wait_for"]

"""Compat API fixtures: shorter waits than production, so timeouts are testable."""

from __future__ import annotations

import pytest

from smsgw_shared.config import Settings


@pytest.fixture
def api_settings(api_settings: Settings) -> Settings:
    compat = api_settings.compat.model_copy(update={"smssender_wait": 3.0})
    api = api_settings.api.model_copy(update={"rpc_timeout": 1.0})
    return api_settings.model_copy(update={"compat": compat, "api": api})

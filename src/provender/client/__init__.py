"""The SDK: :class:`Client`."""

from __future__ import annotations

from provender.client.client import Client

__all__ = ["Client"]

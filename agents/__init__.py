"""Faust wiring: the app, its topics and tables, the agents, the timer and the web views.

``app.py`` imports this package; the submodules register themselves on ``app`` when imported.
"""

from __future__ import annotations

from .base import app, settings

__all__ = ["app", "settings"]

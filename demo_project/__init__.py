"""The tasklock demo project: a games site whose score updates must not overlap per game."""

from .celery import app as celery_app

__all__ = ["celery_app"]

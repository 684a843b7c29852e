"""Celery entry points: each task validates its kwargs, calls one handler, answers."""

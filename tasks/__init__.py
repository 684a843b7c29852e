"""Celery entry points: each task validates its kwargs, calls one handler, answers.

They are not written out one by one: ``tasks.entrypoints`` registers one per row of the
task table (``schemas.contract.TASKS``).
"""

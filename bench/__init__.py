"""Benchmarks run against a real PostgreSQL: ``python -m bench`` runs every one in turn.

Each bench module exposes ``main(argv)`` and a module docstring that says what it
measures and how to read the table it prints. ``bench.dataset`` is the shared loader
that fills a migrated database with a realistic catalog of malls, pins and videos.
"""

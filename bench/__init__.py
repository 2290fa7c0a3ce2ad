"""Benchmarks: tasklock against the raw Redis floor and the libraries users pick instead.

``python -m bench`` (``make bench``) starts its own Redis and memcached, a throwaway
PostgreSQL database, and writes docs/benchmarks.md and docs/benchmarks.png.
"""

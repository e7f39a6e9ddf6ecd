"""Benchmarks of azml-client against its peers and against a plain aiohttp loop: ``python -m benchmarks``.

See ``benchmarks/README.md``; results go to ``benchmarks/results/``.
"""

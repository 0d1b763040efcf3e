"""Benchmarks: ``python -m bench [ingest|dataset|train|abtest|pages|all] [--quick] [--json FILE]``.

Each bench module exposes ``run(args) -> list[dict]`` and builds its own throwaway database
(see ``bench.common.setup_django``); nothing here is imported by the product.
"""

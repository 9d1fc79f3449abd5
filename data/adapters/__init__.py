"""Adapters from public dermatology datasets to the canonical format (see data/ADAPTERS.md).

Each runs as ``python -m data.adapters.NAME --src DIR --out DIR``: fitzpatrick17k, ddi, scin,
acne04 and folder (a folder of images plus your own CSV).
"""

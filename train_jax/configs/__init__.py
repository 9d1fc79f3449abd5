"""Experiment configs: each module exposes `get_config(variant: str | None = None)`."""

"""Helpers the tests share: a toy model and dataset, tiny model configs, a tiny scenario."""

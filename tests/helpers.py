"""Shared test utilities."""
import importlib.util
import pathlib

import ml_collections

REPO = pathlib.Path(__file__).resolve().parent.parent


def load_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """configs/NAME's get_config() with dotted-key overrides ('optim.lr'='1e-3' style keys use '__')."""
    spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config

"""Shared test utilities."""
import importlib.util
import pathlib

import ml_collections

from clipjax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parent.parent


def load_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """configs/NAME's get_config() with dotted-key overrides ('optim.lr'='1e-3' style keys use '__')."""
    spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in overrides.items():
        config_lib.assign(config, key.replace("__", "."), value)
    return config


def save_tiny_llm(folder: str, texts, hidden_size: int = 32) -> str:
    """The tests' random tiny Llama (clipjax.tools.tiny_models.save_random_llm at width 32, 128 positions)."""
    from clipjax.tools.tiny_models import save_random_llm
    return save_random_llm(folder, texts, hidden_size=hidden_size, max_positions=128)

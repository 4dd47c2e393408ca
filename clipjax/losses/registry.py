"""The loss registry: one `LossSpec` per `config.loss.name`, registered by the module that defines the loss.

A spec carries everything the rest of the code needs to know about a loss, so adding one touches one file:
  make(config, mesh) -> LossFn      the train step's loss: (model outputs, batch, loss_state, step)
                                    -> (scalar loss, metrics dict, new loss_state)
  init_state(config, data_size, mesh) -> loss_state   per-sample estimators, created in their sharding ({} if none)
  temperature                       optimiser group of the model's logit_scale: 'trained' (with the model),
                                    'frozen' (constant or unused) or 'temperature' (its own optimiser)
  validate(config)                  start-up checks of the config keys the loss reads (ValueError naming the key)
"""
import dataclasses
from collections.abc import Callable

import jax
import ml_collections

LossFn = Callable[[dict, dict, dict, jax.Array], tuple[jax.Array, dict, dict]]
Config = ml_collections.ConfigDict


def _no_state(config: Config, data_size: int, mesh: jax.sharding.Mesh) -> dict:
    del config, data_size, mesh
    return {}


def _no_checks(config: Config) -> None:
    del config


@dataclasses.dataclass(frozen=True)
class LossSpec:
    name: str
    make: Callable[[Config, jax.sharding.Mesh], LossFn]
    temperature: str = "trained"
    init_state: Callable[[Config, int, jax.sharding.Mesh], dict] = _no_state
    validate: Callable[[Config], None] = _no_checks


REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    if spec.temperature not in ("trained", "frozen", "temperature"):
        raise ValueError(f"loss {spec.name!r}: temperature group {spec.temperature!r} is not one of "
                         f"'trained', 'frozen', 'temperature'")
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> LossSpec:
    if name not in REGISTRY:
        raise ValueError(f"config.loss.name = {name!r}: expected one of {tuple(REGISTRY)}")
    return REGISTRY[name]

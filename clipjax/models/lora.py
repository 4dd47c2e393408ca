"""LoRA adapters (Hu et al., arXiv 2106.09685) for the linear layers of `clipjax.models.llm.LlmDecoder`.

A target layer y = x W computes y = x W + dropout(x) A B * alpha / rank, with A [*in, rank] (PEFT's default
kaiming-uniform, bound 1/sqrt(fan_in)) and B [rank, *out] zeros, so an adapter starts as the identity change.
Adapters live in their own variable collection 'lora', a tree parallel to 'params' ({'layers_0': {'attn': {'q':
{'a', 'b'}}}}), so training differentiates only that tree:

    module = LlmDecoder(config, lora=LoraConfig(rank=16, alpha=32, dropout=0.05))
    lora = init_adapters(module, rng)                       # [mesh=...] for sharded adapters
    out = module.apply({'params': params, 'lora': lora}, ids, mask, deterministic=False, rngs={'dropout': key})
    params = merge(params, lora, alpha=32, rank=16)         # W <- W + A B * alpha / rank; then a plain LlmDecoder

qwix (the package-index LoRA for Flax) was considered: it intercepts dot_general and stores `kernel_lora_a/b`
inside 'params', and its dropout has no train/eval switch, so the small adapter below is used instead.
"""
import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from clipjax import pytree
from clipjax.models.layers import logical
from clipjax.sharding import logical_to_spec

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Adapter rank, alpha (update scale alpha / rank, PEFT convention), input dropout and target layer names."""
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self):
        if unknown := set(self.targets) - set(TARGETS):
            raise ValueError(f"LoRA targets {sorted(unknown)} unknown; expected a subset of {TARGETS}")


def adapter_delta(module: nn.Module, x: jax.Array, n_in: int, kernel_shape: tuple[int, ...],
                  names: tuple[str, ...], config: LoraConfig, deterministic: bool, dtype) -> jax.Array:
    """dropout(x) A B * alpha / rank: x [..., *in] -> [..., *out] for a kernel [*in, *out] with logical `names`.

    Called inside `module`'s compact method: A and B are its variables 'a', 'b' in the 'lora' collection.
    """
    ins, outs = kernel_shape[:n_in], kernel_shape[n_in:]
    a_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=tuple(range(n_in)), out_axis=-1)
    a = module.variable("lora", "a", lambda: logical(a_init, *names[:n_in], None)(
        module.make_rng("params"), (*ins, config.rank), jnp.float32)).value
    b = module.variable("lora", "b", lambda: logical(nn.initializers.zeros, None, *names[n_in:])(
        module.make_rng("params"), (config.rank, *outs), jnp.float32)).value
    if config.dropout > 0 and not deterministic:
        keep = jax.random.bernoulli(module.make_rng("dropout"), 1 - config.dropout, x.shape)
        x = jnp.where(keep, x / (1 - config.dropout), 0)
    h = jnp.tensordot(x.astype(dtype), a.astype(dtype), axes=n_in)
    return jnp.tensordot(h, b.astype(dtype), axes=1) * jnp.asarray(config.alpha / config.rank, dtype)


def init_adapters(module: nn.Module, rng: jax.Array, mesh: jax.sharding.Mesh | None = None) -> dict:
    """Fresh adapters of an LlmDecoder whose `lora` is set (base params are not built: XLA drops them).

    With `mesh`, each leaf is placed on the sharding of its logical names (clipjax.sharding).
    """
    ids = jnp.zeros((1, 1), jnp.int32)
    init = lambda r: module.init(r, ids, return_logits=False)["lora"]  # noqa: E731
    boxed = jax.eval_shape(init, rng)
    if not boxed:
        raise ValueError("init_adapters: the module has no adapters (set LlmDecoder.lora)")
    shardings = None
    if mesh is not None:
        specs, shapes = nn.get_partition_spec(boxed), nn.meta.unbox(boxed)
        shardings = jax.tree.map(lambda s, x: NamedSharding(mesh, logical_to_spec(tuple(s), x.shape, mesh)),
                                 specs, shapes, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))
    return jax.jit(lambda r: nn.meta.unbox(init(r)), out_shardings=shardings)(rng)


def merge(params: dict, lora_params: dict, alpha: float, rank: int) -> dict:
    """Base params with every adapter folded in: kernel + tensordot(A, B) * alpha / rank (kernel dtype kept)."""
    flat, adapters = pytree.flatten(params), pytree.flatten(lora_params)
    for path in (p[:-2] for p in adapters if p.endswith("/a")):
        a, b = adapters[f"{path}/a"], adapters[f"{path}/b"]
        if a.shape[-1] != rank:
            raise ValueError(f"LoRA adapter {path!r} has rank {a.shape[-1]}, merge was given rank {rank}")
        kernel = flat[f"{path}/kernel"]
        delta = jnp.tensordot(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), axes=1) * (alpha / rank)
        flat[f"{path}/kernel"] = (jnp.asarray(kernel, jnp.float32) + delta).astype(kernel.dtype)
    return pytree.unflatten(flat)


def save_adapters(path: str, lora_params: dict, config: LoraConfig) -> None:
    """One safetensors file: leaves keyed 'layers_0/attn/q/a', the LoraConfig in its metadata."""
    from safetensors.numpy import save_file
    tensors = {k: np.ascontiguousarray(jax.device_get(v)) for k, v in pytree.flatten(lora_params).items()}
    save_file(tensors, path, metadata={"lora_config": json.dumps(dataclasses.asdict(config))})


def load_adapters(path: str) -> tuple[dict, LoraConfig]:
    """(adapter tree of numpy arrays, LoraConfig) written by `save_adapters`."""
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
        meta = json.loads((f.metadata() or {}).get("lora_config", "null"))
        if meta is None:
            raise ValueError(f"{path}: not a clipjax LoRA file (no 'lora_config' metadata)")
        tree = pytree.unflatten({k: f.get_tensor(k) for k in f.keys()})
    return tree, LoraConfig(**{**meta, "targets": tuple(meta["targets"])})

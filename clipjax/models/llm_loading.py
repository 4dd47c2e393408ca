"""Hugging Face folders <-> `clipjax.models.llm.LlmDecoder`: config.json + safetensors (single file or sharded
with model.safetensors.index.json), read with safetensors' numpy API (no torch), one tensor at a time.

Layout: a Linear weight [out, in] is the transposed Flax kernel [*in, *out] (q/k/v outputs split into
[heads, head_dim], o's input likewise); biases and RMSNorm weights are reshaped; embeddings copied. With a mesh,
each leaf is built straight onto the sharding of its logical axis names (`clipjax.sharding.logical_to_spec`), so
no device ever holds more than its shards.
"""
import contextlib
import json
import logging
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes  # noqa: F401  (registers numpy's 'bfloat16', which safetensors' numpy API needs for BF16 tensors)
import numpy as np
from jax.sharding import NamedSharding

from clipjax import pytree
from clipjax.models.layers import Dtype
from clipjax.models.llm import LlmConfig, LlmDecoder
from clipjax.sharding import logical_to_spec

Layout = dict[str, tuple[str, tuple[int, ...], bool]]


def hf_layout(c: LlmConfig) -> Layout:
    """Flax path ('layers_0/attn/q/kernel') -> (HF tensor name, HF shape, is a Linear weight to transpose)."""
    d, hd = c.hidden_size, c.head_dim
    out = {"embed/embedding": ("model.embed_tokens.weight", (c.vocab_size, d), False),
           "norm/scale": ("model.norm.weight", (d,), False)}
    if not c.tie_word_embeddings:
        out["lm_head/kernel"] = ("lm_head.weight", (c.vocab_size, d), True)
    linears = {"attn/q": ("self_attn.q_proj", c.num_heads * hd, d, c.qkv_bias),
               "attn/k": ("self_attn.k_proj", c.num_kv_heads * hd, d, c.qkv_bias),
               "attn/v": ("self_attn.v_proj", c.num_kv_heads * hd, d, c.qkv_bias),
               "attn/o": ("self_attn.o_proj", d, c.num_heads * hd, c.o_bias),
               "mlp/gate": ("mlp.gate_proj", c.intermediate_size, d, c.mlp_bias),
               "mlp/up": ("mlp.up_proj", c.intermediate_size, d, c.mlp_bias),
               "mlp/down": ("mlp.down_proj", d, c.intermediate_size, c.mlp_bias)}
    for i in range(c.num_layers):
        p, h = f"layers_{i}/", f"model.layers.{i}."
        out[p + "input_norm/scale"] = (h + "input_layernorm.weight", (d,), False)
        out[p + "post_attention_norm/scale"] = (h + "post_attention_layernorm.weight", (d,), False)
        for path, (name, n_out, n_in, bias) in linears.items():
            out[p + path + "/kernel"] = (h + name + ".weight", (n_out, n_in), True)
            if bias:
                out[p + path + "/bias"] = (h + name + ".bias", (n_out,), False)
    return out


def to_flax(w: np.ndarray, shape: tuple[int, ...], linear: bool) -> np.ndarray:
    """HF tensor -> Flax leaf of `shape`: W^T reshaped for Linear weights, else reshaped."""
    return (w.T if linear else w).reshape(shape)


def to_hf(x: np.ndarray, hf_shape: tuple[int, ...], linear: bool) -> np.ndarray:
    """Flax leaf -> HF tensor of `hf_shape` (inverse of `to_flax`)."""
    return np.ascontiguousarray(x.reshape(hf_shape[::-1]).T if linear else x.reshape(hf_shape))


def abstract_params(module: LlmDecoder) -> tuple[dict, dict]:
    """({path: ShapeDtypeStruct}, {path: logical axis names}) of the module's params, without allocating them."""
    boxed = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
    names = jax.tree.map(tuple, nn.get_partition_spec(boxed["params"]),
                         is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    return pytree.flatten(nn.meta.unbox(boxed["params"])), pytree.flatten(names)


def _weight_files(folder: str) -> dict[str, str]:
    """HF tensor name -> safetensors file path, from the index of a sharded checkpoint or the single file."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        for name in sorted(set(weight_map.values())):
            if not os.path.isfile(os.path.join(folder, name)):
                raise FileNotFoundError(f"{folder}: shard file {name!r} listed in model.safetensors.index.json is "
                                        "missing")
        return {k: os.path.join(folder, v) for k, v in weight_map.items()}
    single = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(single):
        raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    from safetensors import safe_open
    with safe_open(single, framework="numpy") as f:
        return dict.fromkeys(f.keys(), single)


def read_config(folder: str) -> LlmConfig:
    """LlmConfig from `folder`/config.json, the folder and file checked first."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"LLM folder {folder!r} does not exist (expected a Hugging Face model folder with "
                                "config.json and model.safetensors)")
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder}: no config.json")
    with open(path) as f:
        return LlmConfig.from_hf_config(json.load(f))


def from_pretrained(folder: str, dtype: Dtype = jnp.float32, param_dtype: Dtype | None = None,
                    mesh: jax.sharding.Mesh | None = None, causal: bool = True, **module_kwargs
                    ) -> tuple[LlmDecoder, dict]:
    """(LlmDecoder, params) from a local Hugging Face folder. param_dtype defaults to dtype; with `mesh` every
    leaf is sharded by its logical axis names. `module_kwargs` (lora, remat) go to LlmDecoder.

    Every expected tensor is checked (present, shape) before any is read; extra tensors are logged and ignored.
    """
    config = read_config(folder)
    module = LlmDecoder(config, dtype=dtype, param_dtype=param_dtype or dtype, causal=causal, **module_kwargs)
    shapes, names = abstract_params(module)
    layout, files = hf_layout(config), _weight_files(folder)
    if unused := sorted(set(files) - {name for name, _, _ in layout.values()}):
        logging.warning("%s: %d tensors not used by %s: %s", folder, len(unused), config.model_type, unused[:5])
    from safetensors import safe_open
    with contextlib.ExitStack() as stack:
        handles = {p: stack.enter_context(safe_open(p, framework="numpy")) for p in sorted(set(files.values()))}
        for path, (name, hf_shape, _) in layout.items():
            if name not in files:
                raise ValueError(f"{folder}: weight {name!r} is missing (expected shape {hf_shape})")
            found = tuple(handles[files[name]].get_slice(name).get_shape())
            if found != hf_shape:
                raise ValueError(f"{folder}: weight {name!r} has shape {found}, config.json implies {hf_shape}")
        flat = {}
        for path, (name, _, linear) in layout.items():
            value = to_flax(handles[files[name]].get_tensor(name), shapes[path].shape, linear)
            flat[path] = _place(value.astype(shapes[path].dtype), names[path], mesh)
    return module, pytree.unflatten(flat)


def _place(value: np.ndarray, names: tuple[str | None, ...], mesh: jax.sharding.Mesh | None) -> jax.Array:
    """A host array on the default device, or assembled shard by shard on its logical-name sharding of `mesh`."""
    if mesh is None:
        return jax.device_put(value)
    sharding = NamedSharding(mesh, logical_to_spec(names, value.shape, mesh))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def save_pretrained(module: LlmDecoder, params: dict, folder: str) -> None:
    """Write `folder`/config.json and model.safetensors (HF names and layout, the params' dtypes)."""
    from safetensors.numpy import save_file
    os.makedirs(folder, exist_ok=True)
    flat = pytree.flatten(params)
    tensors = {name: to_hf(np.asarray(jax.device_get(flat[path])), hf_shape, linear)
               for path, (name, hf_shape, linear) in hf_layout(module.config).items()}
    dtypes = {str(t.dtype) for t in tensors.values()}
    config = module.config.to_hf_config() | {"dtype": dtypes.pop() if len(dtypes) == 1 else "float32"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def load_tokenizer(folder: str, vocab_size: int | None = None):
    """transformers' fast tokenizer from `folder` (local files only). Refused when it has more tokens than the
    model's embedding table (`vocab_size`, default: config.json's in the same folder)."""
    if not any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise FileNotFoundError(f"{folder!r} holds no tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, use_fast=True)
    if vocab_size is None and os.path.isfile(os.path.join(folder, "config.json")):
        vocab_size = read_config(folder).vocab_size
    if vocab_size is not None and len(tok) > vocab_size:
        raise ValueError(f"{folder}: tokenizer has {len(tok)} tokens, more than the model's {vocab_size} embeddings")
    return tok

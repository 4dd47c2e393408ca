"""Decoder-only LLMs in Flax linen: Llama 2/3 (arXiv 2307.09288, 2407.21783), Mistral (arXiv 2310.06825), Qwen2
(arXiv 2407.10671), with weights from a local Hugging Face folder (`clipjax.models.llm_loading`).

    module, params = llm.from_pretrained(folder, dtype=jnp.bfloat16)     # (clipjax.models.llm_loading)
    out = module.apply({"params": params}, input_ids, attention_mask)    # [B, T] int, [B, T] 0/1
    out["last_hidden"]  # [B, T, D] after the final RMSNorm;  out["logits"]: [B, T, V] (return_logits=True)
    emb = mean_pool(out["last_hidden"], attention_mask)                  # [B, D] float32
    new = generate(module, params, prompt_ids, prompt_mask, max_new_tokens=32)   # left-padded prompts

Block: x + Attn(RMSNorm(x)), then x + down(silu(gate(h)) * up(h)) with h = RMSNorm(x); RMSNorm(x) = w * x /
sqrt(mean(x^2) + eps), computed in float32. Attention: grouped-query (num_kv_heads divides num_heads), rotary
position embedding on q and k (rotate-half layout, as the Hugging Face checkpoints store q/k), softmax in float32
(`jax.nn.dot_product_attention`). Positions come from the mask, cumsum(mask) - 1, so left padding changes nothing.
`causal=False` gives LLM2Vec's bidirectional attention (arXiv 2404.05961): padding-only mask.
Mistral's sliding window is applied as Hugging Face does: key slot > query slot - window (absolute slots).
Dtypes: parameters are stored in `param_dtype` and cast to the compute `dtype` (bf16 matmuls accumulate in float32
on GPU/TPU); RMSNorm, RoPE, attention logits/softmax and mean pooling are float32; logits come in `dtype`.

Parameters (logical axis names): embed/embedding ('vocab', 'embed'); layers_i/attn/{q,k,v}/kernel ('embed',
'heads', 'kv'), o/kernel ('heads', 'kv', 'embed'), biases by their output axes; layers_i/mlp/{gate,up}/kernel
('embed', 'mlp'), down/kernel ('mlp', 'embed'); RMSNorm scales ('norm',); lm_head/kernel ('embed', 'vocab')
unless the embeddings are tied. K/V heads use 'heads' too (replicated when they do not divide the mesh axis).
"""
import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from clipjax import sharding
from clipjax.models.layers import Dtype, logical
from clipjax.models.lora import LoraConfig, adapter_delta

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3")
Cache = tuple[tuple[jax.Array, jax.Array], ...]  # per layer (k, v), each [B, S, num_kv_heads, head_dim]


@dataclasses.dataclass(frozen=True)
class LlmConfig:
    """Architecture of a decoder LLM; `from_hf_config` reads a Hugging Face config.json dict."""
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_type: str = "default"  # 'linear': frequencies / factor; 'llama3': Llama 3.1's band-wise rescaling
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_positions: int = 8192
    max_position_embeddings: int = 2048
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any]) -> "LlmConfig":
        """Parse config.json (rope as legacy 'rope_theta' + 'rope_scaling' or transformers 5 'rope_parameters')."""
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not supported; supported: "
                             f"{', '.join(SUPPORTED_MODEL_TYPES)}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {hf['hidden_act']!r} is not supported (expected 'silu')")
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"rope type {rope_type!r} is not supported; supported: {', '.join(ROPE_TYPES)}")
        if rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError("partial_rotary_factor != 1 is not supported")
        if model_type == "qwen2" and hf.get("use_sliding_window"):
            raise ValueError("qwen2 with use_sliding_window=True is not supported")
        heads = hf["num_attention_heads"]
        eos = hf.get("eos_token_id")
        bias = bool(hf.get("attention_bias", False))
        return cls(
            model_type=model_type, vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"], num_layers=hf["num_hidden_layers"], num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)), rope_type=rope_type,
            rope_factor=rope.get("factor", 1.0), rope_low_freq_factor=rope.get("low_freq_factor", 1.0),
            rope_high_freq_factor=rope.get("high_freq_factor", 4.0),
            rope_original_max_positions=rope.get("original_max_position_embeddings",
                                                 hf.get("max_position_embeddings", 2048)),
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            qkv_bias=model_type == "qwen2" or bias, o_bias=bias, mlp_bias=bool(hf.get("mlp_bias", False)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            sliding_window=hf.get("sliding_window") if model_type == "mistral" else None,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,)))

    def to_hf_config(self) -> dict[str, Any]:
        """config.json for transformers (legacy rope keys, which transformers 4 and 5 both read)."""
        biases, eos = (self.qkv_bias, self.o_bias, self.mlp_bias), self.eos_token_id
        expressible = {"qwen2": biases == (True, False, False), "mistral": biases == (False, False, False),
                       "llama": self.qkv_bias == self.o_bias}[self.model_type]
        if not expressible:
            raise ValueError(f"{self.model_type} config.json cannot express (qkv_bias, o_bias, mlp_bias) = {biases}")
        rope = {"rope_type": self.rope_type, "factor": self.rope_factor}
        if self.rope_type == "llama3":
            rope |= {"low_freq_factor": self.rope_low_freq_factor, "high_freq_factor": self.rope_high_freq_factor,
                     "original_max_position_embeddings": self.rope_original_max_positions}
        arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
        out = {
            "model_type": self.model_type, "architectures": [arch[self.model_type]], "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads, "head_dim": self.head_dim, "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta,
            "rope_scaling": None if self.rope_type == "default" else rope,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "bos_token_id": self.bos_token_id,
            "eos_token_id": list(eos) if len(eos) > 1 else (eos[0] if eos else None)}
        if self.model_type == "llama":
            out |= {"attention_bias": self.qkv_bias, "mlp_bias": self.mlp_bias}
        if self.model_type == "mistral":
            out["sliding_window"] = self.sliding_window
        return out


def rope_inv_freq(c: LlmConfig) -> np.ndarray:
    """Rotary frequencies [head_dim / 2]: theta^(-2i/d), rescaled for 'linear' and 'llama3' rope types.

    llama3 (meta-llama/llama-models, `apply_scaling`): wavelengths above orig/low_freq_factor are divided by
    factor, below orig/high_freq_factor kept, and in between interpolated with s = (orig/wavelen - low) / (high - low):
    f' = (1 - s) f / factor + s f.
    """
    f = 1.0 / c.rope_theta ** (np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim)
    if c.rope_type == "linear":
        return (f / c.rope_factor).astype(np.float32)
    if c.rope_type == "llama3":
        wavelen = 2 * math.pi / f
        low, high = c.rope_low_freq_factor, c.rope_high_freq_factor
        s = (c.rope_original_max_positions / wavelen - low) / (high - low)
        f = np.where(wavelen > c.rope_original_max_positions / low, f / c.rope_factor,
                     np.where(wavelen < c.rope_original_max_positions / high, f, (1 - s) * f / c.rope_factor + s * f))
    return f.astype(np.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, T, N, hd] rotated: x cos + rotate_half(x) sin, rotate_half([x1, x2]) = [-x2, x1]; cos/sin [B, T, hd]."""
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x * cos[:, :, None] + rotated * sin[:, :, None]).astype(x.dtype)


def mean_pool(last_hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked mean over tokens: sum_t m_t h_t / max(sum_t m_t, 1). [B, T, D], [B, T] -> [B, D] float32."""
    m = mask.astype(jnp.float32)[..., None]
    return jnp.sum(last_hidden.astype(jnp.float32) * m, axis=1) / jnp.maximum(m.sum(axis=1), 1.0)


def init_cache(config: LlmConfig, batch: int, length: int, dtype: Dtype = jnp.float32) -> Cache:
    """Zero KV cache: per layer (k, v) of [batch, length, num_kv_heads, head_dim]."""
    shape = (batch, length, config.num_kv_heads, config.head_dim)
    return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.num_layers))


class Linear(nn.Module):
    """x [..., *in] -> x W (+ b) (+ LoRA update when `lora` targets this layer's name): [..., *features].

    kernel [*in, *features] named `names` (input dims first), bias [*features]; normal(0.02) init as HF.
    """
    features: tuple[int, ...]
    names: tuple[str, ...]
    use_bias: bool = False
    lora: LoraConfig | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        n_in = len(self.names) - len(self.features)
        shape = (*x.shape[x.ndim - n_in:], *self.features)
        kernel = self.param("kernel", logical(nn.initializers.normal(0.02), *self.names), shape, self.param_dtype)
        y = jnp.tensordot(x.astype(self.dtype), kernel.astype(self.dtype), axes=n_in)
        if self.use_bias:
            y = y + self.param("bias", logical(nn.initializers.zeros, *self.names[n_in:]), self.features,
                               self.param_dtype).astype(self.dtype)
        if self.lora is not None and self.name in self.lora.targets:
            y = y + adapter_delta(self, x, n_in, shape, self.names, self.lora, deterministic, self.dtype)
        return y


class RMSNorm(nn.Module):
    """w * x / sqrt(mean(x^2) + eps) in float32, cast to `dtype`; scale ('norm',) initialised to ones."""
    eps: float
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("scale", logical(nn.initializers.ones, "norm"), (x.shape[-1],), self.param_dtype)
        x = x.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (x * w.astype(jnp.float32)).astype(self.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE; x [B, T, D] -> ([B, T, D], updated (k, v) cache or None).

    mask [B, 1, T, S] bool (True = attend); cos/sin [B, T, head_dim]; with a cache the new k/v are written at
    slots cache_index..cache_index+T-1 and attention runs over all S slots.
    """
    config: LlmConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(self, x, mask, cos, sin, cache=None, cache_index=0, deterministic: bool = True):
        c, kw = self.config, dict(lora=self.lora, dtype=self.dtype, param_dtype=self.param_dtype)

        def proj(name: str, heads: int) -> jax.Array:
            return Linear((heads, c.head_dim), ("embed", "heads", "kv"), c.qkv_bias, name=name, **kw)(x, deterministic)

        q = apply_rope(proj("q", c.num_heads), cos, sin)
        k = apply_rope(proj("k", c.num_kv_heads), cos, sin)
        v = proj("v", c.num_kv_heads)
        if cache is not None:
            cache = tuple(jax.lax.dynamic_update_slice(buf, new.astype(buf.dtype), (0, cache_index, 0, 0))
                          for buf, new in zip(cache, (k, v)))
            k, v = (buf.astype(self.dtype) for buf in cache)
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=None)
        return Linear((c.hidden_size,), ("heads", "kv", "embed"), c.o_bias, name="o", **kw)(out, deterministic), cache


class Mlp(nn.Module):
    """SwiGLU MLP: down(silu(gate(x)) * up(x)), [B, T, D] -> [B, T, D]."""
    config: LlmConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        c, kw = self.config, dict(lora=self.lora, dtype=self.dtype, param_dtype=self.param_dtype)
        gate = Linear((c.intermediate_size,), ("embed", "mlp"), c.mlp_bias, name="gate", **kw)(x, deterministic)
        up = Linear((c.intermediate_size,), ("embed", "mlp"), c.mlp_bias, name="up", **kw)(x, deterministic)
        return Linear((c.hidden_size,), ("mlp", "embed"), c.mlp_bias, name="down", **kw)(nn.silu(gate) * up,
                                                                                          deterministic)


class DecoderLayer(nn.Module):
    """x + Attn(RMSNorm(x)), then x + Mlp(RMSNorm(x)); returns (x [B, T, D], the layer's cache or None)."""
    config: LlmConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    lora: LoraConfig | None = None

    @nn.compact
    def __call__(self, x, mask, cos, sin, cache=None, cache_index=0, deterministic: bool = True):
        c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = RMSNorm(c.rms_norm_eps, name="input_norm", **kw)(x)
        h, cache = Attention(c, lora=self.lora, name="attn", **kw)(h, mask, cos, sin, cache, cache_index, deterministic)
        x = x + h
        h = RMSNorm(c.rms_norm_eps, name="post_attention_norm", **kw)(x)
        return x + Mlp(c, lora=self.lora, name="mlp", **kw)(h, deterministic), cache


class LlmDecoder(nn.Module):
    """Token embedding -> `num_layers` DecoderLayers -> final RMSNorm (-> logits). Build with `from_pretrained`.

    dtype: compute dtype (bfloat16 or float32); param_dtype: storage dtype of the parameters. `causal=False`:
    bidirectional attention over non-pad tokens (LLM2Vec). `lora`: adapters in the 'lora' collection
    (clipjax.models.lora). `remat`: recompute each layer in the backward pass.
    """
    config: LlmConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    causal: bool = True
    lora: LoraConfig | None = None
    remat: bool = False

    def setup(self):
        c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.embed = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=logical(
            nn.initializers.normal(0.02), "vocab", "embed"), **kw)
        layer = nn.remat(DecoderLayer, static_argnums=(7,)) if self.remat else DecoderLayer
        self.layers = [layer(c, lora=self.lora, **kw) for _ in range(c.num_layers)]
        self.norm = RMSNorm(c.rms_norm_eps, **kw)
        if not c.tie_word_embeddings:
            self.lm_head = Linear((c.vocab_size,), ("embed", "vocab"), **kw)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None, *, cache: Cache | None = None,
                 cache_index: jax.Array | int = 0, return_logits: bool = True, deterministic: bool = True) -> dict:
        """input_ids [B, T] -> {'last_hidden': [B, T, D], 'logits': [B, T, V] (if return_logits), 'cache'}.

        attention_mask (1 = token, 0 = padding) is [B, T], or with a `cache` of S slots [B, S] over the slots,
        the T new tokens occupying slots cache_index..cache_index+T-1 ('cache' is then returned updated).
        Position of slot j: (number of tokens in slots 0..j) - 1. Dropout (LoRA only) runs when not deterministic.
        """
        c = self.config
        b, t = input_ids.shape
        s = t if cache is None else cache[0][0].shape[1]
        valid = jnp.ones((b, s), bool) if attention_mask is None else attention_mask.astype(bool)
        if valid.shape != (b, s):
            raise ValueError(f"attention_mask has shape {valid.shape}, expected {(b, s)}")
        q_slots, k_slots = cache_index + jnp.arange(t), jnp.arange(s)
        positions = jnp.take(jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0), q_slots, axis=1)
        angles = positions[..., None].astype(jnp.float32) * rope_inv_freq(c)
        angles = jnp.concatenate([angles, angles], axis=-1)
        cos, sin = jnp.cos(angles), jnp.sin(angles)
        allowed = valid[:, None, :]                                          # [B, T, S]
        if self.causal:
            allowed = allowed & (k_slots[None, :] <= q_slots[:, None])
        if self.causal and c.sliding_window is not None:
            allowed = allowed & (k_slots[None, :] > q_slots[:, None] - c.sliding_window)
        mask = allowed[:, None]                                              # [B, 1, T, S]
        # activations pinned to the batch axes between layers: with FSDP, GSPMD otherwise lets the 'embed'-sharded
        # weights reshard them (temporaries per device of a 4-layer, 512-wide clm step on 8 devices, FSDP 8: 308 MB
        # unpinned, 150 MB pinned; data parallel 132 MB)
        x, new_cache = sharding.constrain_batch(self.embed(input_ids)), []
        for i, layer in enumerate(self.layers):
            x, layer_cache = layer(x, mask, cos, sin, None if cache is None else cache[i], cache_index, deterministic)
            x = sharding.constrain_batch(x)
            new_cache.append(layer_cache)
        out = {"last_hidden": self.norm(x)}
        if return_logits:
            out["logits"] = self.logits(out["last_hidden"])
        if cache is not None:
            out["cache"] = tuple(new_cache)
        return out

    def logits(self, hidden: jax.Array) -> jax.Array:
        """[..., D] -> [..., V]: hidden @ lm_head, or @ embedding^T when tied."""
        return self.embed.attend(hidden) if self.config.tie_word_embeddings else self.lm_head(hidden)


def top_p_filter(logits: jax.Array, top_p: jax.Array | float) -> jax.Array:
    """Nucleus (arXiv 1904.09751): logits [B, V] with every token outside the smallest top set whose probability
    reaches top_p set to -inf (the most likely token always stays)."""
    ranked = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)
    probs = jax.nn.softmax(ranked, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    cutoff = jnp.min(jnp.where(mass_before < top_p, ranked, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= cutoff, logits, -jnp.inf)


def generate(module: LlmDecoder, params: dict, prompt_ids: jax.Array, prompt_mask: jax.Array,
             max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0, rng: jax.Array | None = None,
             eos_token_id: int | Sequence[int] | None = None, pad_token_id: int = 0) -> jax.Array:
    """New token ids [B, max_new_tokens] after left-padded prompts [B, P] (prompt_mask [B, P], 1 = token).

    One prefill fills a static KV cache of P + max_new_tokens slots; a while_loop then decodes one token per
    step: argmax when temperature == 0, else a draw from softmax(logits / temperature) within the top_p nucleus
    (key fold_in(rng, step)). A row that emits an eos id continues with pad; the loop ends once all rows have.
    Compiled once per (module, shapes, max_new_tokens, greedy or not).
    """
    if not module.causal:
        raise ValueError("generate needs a causal module (causal=True)")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {temperature}, {top_p}")
    if temperature > 0 and rng is None:
        raise ValueError("sampling (temperature > 0) needs rng")
    eos = jnp.asarray(np.atleast_1d(-1 if eos_token_id is None else eos_token_id), jnp.int32)  # -1: never
    return _generate(module, max_new_tokens, temperature == 0, params, jnp.asarray(prompt_ids, jnp.int32),
                     jnp.asarray(prompt_mask, jnp.int32), jax.random.key(0) if rng is None else rng,
                     jnp.float32(temperature or 1.0), jnp.float32(top_p), eos, jnp.int32(pad_token_id))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _generate(module, n, greedy, params, ids, mask, rng, temperature, top_p, eos, pad):
    b, p = ids.shape
    slots_mask = jnp.concatenate([mask, jnp.ones((b, n), mask.dtype)], axis=1)

    def run(tokens, cache, index):
        return module.apply({"params": params}, tokens, slots_mask, cache=cache, cache_index=index,
                            return_logits=False)

    def pick(hidden, step):
        logits = module.apply({"params": params}, hidden, method=LlmDecoder.logits).astype(jnp.float32)
        if greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        filtered = top_p_filter(logits / temperature, top_p)
        return jax.random.categorical(jax.random.fold_in(rng, step), filtered).astype(jnp.int32)

    def body(state):
        i, tok, done, tokens, cache = state
        out = run(tok[:, None], cache, p + i - 1)
        new = jnp.where(done, pad, pick(out["last_hidden"][:, 0], i))
        return i + 1, new, done | jnp.isin(new, eos), tokens.at[:, i].set(new), out["cache"]

    out = run(ids, init_cache(module.config, b, p + n, module.dtype), 0)
    tok = pick(out["last_hidden"][:, -1], 0)
    state = (jnp.int32(1), tok, jnp.isin(tok, eos), jnp.full((b, n), pad).at[:, 0].set(tok), out["cache"])
    return jax.lax.while_loop(lambda s: (s[0] < n) & ~jnp.all(s[2]), body, state)[3]


def __getattr__(name: str):
    """`llm.from_pretrained`, `llm.save_pretrained`, `llm.load_tokenizer` (defined in llm_loading, which imports
    this module), so the API reads like transformers'."""
    if name in ("from_pretrained", "save_pretrained", "load_tokenizer"):
        from clipjax.models import llm_loading
        return getattr(llm_loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Text transformer tower.

tokens [B, L] int32 (pad id 0, L <= context_length) -> token embedding (normal, std 0.02) + the first L rows
of a learned position embedding [context_length, width] (normal, std 0.01) -> pre-LN encoder + final LN
-> pool -> linear projection (no bias) -> [B, embed_dim].

Masking: `causal` uses a causal mask only (OpenAI CLIP: padding sits to the right of the EOT token, and
causal attention never looks right, so an EOT-pooled output ignores it). Otherwise attention is
bidirectional, with the pad keys after each row's last real token masked out when `pad_mask` (passed to attention
as key lengths, which cuDNN's kernel takes), or over every position, padding included, when not
(UCSC-VLAA/CLIPA clipa_jax/models/text_transformer.py and facebookresearch/flip models_flip.py call their encoder
without a mask; OpenCLIP's `no_causal_mask` tower does the same).
Pooling: 'eot' = the position of the largest token id in the row (OpenAI: EOT 49407 is the largest id);
'last' = the last non-pad position; 'last_position' = position L-1 of the padded row, whatever it holds
(CLIPA's pool_type='last', `x[:, -1]`; OpenCLIP pool_type='last'); 'mean' = mean over non-pad positions;
'first' = position 0 (FLIP, txt_avg_token=False).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from clipjax.models.layers import Dtype, Encoder, dense_init, logical

PAD_ID = 0


class TextTransformer(nn.Module):
    """Text tower; fields mirror `sizes.text` plus embed_dim, dtype (compute), remat, attention and scan
    (`clipjax.models.layers.Encoder`)."""
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    vocab_size: int
    context_length: int
    causal: bool
    pad_mask: bool
    pool: str
    embed_dim: int
    dtype: Dtype = jnp.float32
    remat: str = "none"
    attention: str = "auto"
    scan: bool = False

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens [B, L] int -> unnormalised features [B, embed_dim] in `dtype`."""
        b, length = tokens.shape
        if length > self.context_length:
            raise ValueError(f"text length {length} exceeds context_length {self.context_length}")
        x = nn.Embed(self.vocab_size, self.width, dtype=self.dtype,
                     embedding_init=logical(nn.initializers.normal(0.02), "vocab", "embed"),
                     name="token_embed")(tokens)
        pos = self.param("pos_embedding", logical(nn.initializers.normal(0.01), "pos", "embed"),
                         (self.context_length, self.width))
        x = x + pos[:length].astype(self.dtype)[None]
        valid = tokens != PAD_ID
        last = length - 1 - jnp.argmax(valid[:, ::-1], axis=-1)  # the last non-pad position of each row
        kv_lengths = last + 1 if self.pad_mask and not self.causal else None
        x = Encoder(self.depth, self.mlp_dim, self.num_heads, self.dtype, self.remat, self.attention, self.scan,
                    causal=self.causal, name="encoder")(x, kv_lengths)
        rows = jnp.arange(b)
        if self.pool == "eot":
            x = x[rows, jnp.argmax(tokens, axis=-1)]
        elif self.pool == "last":
            x = x[rows, last]
        elif self.pool == "last_position":
            x = x[:, -1]
        elif self.pool == "mean":
            w = valid.astype(jnp.float32)[..., None]
            x = (jnp.sum(x.astype(jnp.float32) * w, axis=1) / jnp.maximum(w.sum(axis=1), 1.0)).astype(self.dtype)
        elif self.pool == "first":
            x = x[:, 0]
        else:
            raise ValueError(f"pool {self.pool!r}: expected 'eot', 'last', 'last_position', 'mean' or 'first'")
        return nn.Dense(self.embed_dim, use_bias=False, dtype=self.dtype,
                        kernel_init=logical(dense_init, "embed", "proj"), name="proj")(x)

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


def save_tiny_llm(folder: str, texts, hidden_size: int = 32) -> str:
    """A random tiny Llama (2 layers) with a word-level tokenizer over `texts`, saved as a Hugging Face folder."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from clipjax import llm_text
    from clipjax.models import llm, llm_loading

    tokenizer = llm_text.build_word_tokenizer(texts)
    hf = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=hidden_size,
              intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              rms_norm_eps=1e-5, max_position_embeddings=128, tie_word_embeddings=False)
    module = llm.LlmDecoder(llm.LlmConfig.from_hf_config(hf))
    ones = jnp.ones((1, 4), jnp.int32)
    params = nn.meta.unbox(module.init(jax.random.PRNGKey(0), ones, ones)["params"])
    llm_loading.save_pretrained(module, params, folder)
    tokenizer.save_pretrained(folder)
    return folder

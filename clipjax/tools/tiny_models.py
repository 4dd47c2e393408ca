"""Tiny random Hugging Face model folders (a Llama, a LLaVA) with word-level tokenizers, for the caption tools'
CPU demo (clipjax.tools.rewrite_tiny) and the tests: nothing is downloaded."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from clipjax import llm_text
from clipjax.models import llm, llm_loading


def save_random_llm(folder: str, texts, hidden_size: int = 64, max_positions: int = 256) -> str:
    """A random 2-layer Llama (width `hidden_size`, 4 query / 2 key-value heads) with a word-level tokenizer over
    `texts`, as a Hugging Face folder."""
    tokenizer = llm_text.build_word_tokenizer(texts)
    hf = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=hidden_size,
              intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              rms_norm_eps=1e-5, max_position_embeddings=max_positions, tie_word_embeddings=False)
    module = llm.LlmDecoder(llm.LlmConfig.from_hf_config(hf))
    ones = jnp.ones((1, 4), jnp.int32)
    params = nn.meta.unbox(module.init(jax.random.PRNGKey(0), ones, ones)["params"])
    llm_loading.save_pretrained(module, params, folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_random_vlm(folder: str, texts) -> str:
    """A random LLaVA (1-layer CLIP vision tower on 32 px, 1-layer Llama) with a word-level tokenizer plus <image>,
    saved with its processor as a Hugging Face folder (transformers + torch)."""
    import torch
    import transformers
    tok = llm_text.build_word_tokenizer(texts)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.chat_template = None
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8)
    text = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)
    config = transformers.LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                                      image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    transformers.LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor = transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                                        crop_size={"height": 32, "width": 32}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="default", image_token="<image>",
        num_additional_image_tokens=1)
    processor.save_pretrained(folder)
    return folder

"""Text side of LLM2CLIP stage 1 (arXiv 2411.04997): captions -> left-padded token ids for a decoder LLM, with the
mask that mean pooling averages over, and the tiny word-level tokenizer of the built-in world.

    ids, attention_mask, pool_mask = encode_for_embedding(tokenizer, captions, instruction, max_length=512)
    emb = llm.mean_pool(module.apply(..., ids, attention_mask)["last_hidden"], pool_mask)

Each text is wrapped in the tokenizer's chat template as one user message, `instruction + caption`; rows are LEFT
padded with pad id = eos (LLM2Vec, arXiv 2404.05961, McGill-NLP/llm2vec; LLM2CLIP). The pool mask covers the
caption's own tokens only: tokens whose character span (the fast tokenizer's offsets) overlaps the caption's span
in the rendered string, so the template's prefix and suffix and the instruction are left out of the mean.
"""
from collections.abc import Iterable, Sequence

import numpy as np

SENTINEL = "\x00CAPTION\x00"  # stands for the caption when the template is rendered once per instruction
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<mask>", "<|user|>", "<|assistant|>")
# The tiny tokenizer's chat template: <bos><|user|> CONTENT<eos> (Jinja, as transformers' apply_chat_template reads).
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] | trim }}{{ eos_token }}"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def template_parts(tokenizer, instruction: str = "") -> tuple[str, str]:
    """(prefix, suffix) the chat template puts around a caption that follows `instruction` in one user message;
    ('', '') when the tokenizer has no chat template (its own special tokens are then added when tokenising)."""
    if not getattr(tokenizer, "chat_template", None):
        return instruction, ""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": instruction + SENTINEL}], tokenize=False)
    prefix, found, suffix = rendered.partition(SENTINEL)
    if not found:
        raise ValueError("the tokenizer's chat template does not reproduce the message content")
    return prefix, suffix


def eos_id(tokenizer) -> int:
    """The pad id of embedding batches: the tokenizer's eos (its first, if several)."""
    eos = tokenizer.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    if eos is None:
        raise ValueError("the tokenizer has no eos token (LLM2Vec pads with eos)")
    return int(eos)


def special_ids(tokenizer) -> np.ndarray:
    """Ids of every special token (bos, eos, pad, template markers such as <|user|> or <|start_header_id|>)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False))
    return np.array(sorted(ids), np.int32)


def left_pad(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> np.ndarray:
    """int32 [N, width]: each row right-aligned, `pad_id` before it (rows longer than width are refused)."""
    out = np.full((len(rows), width), pad_id, np.int32)
    for i, row in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"row {i} has {len(row)} tokens, more than width {width}")
        if len(row):
            out[i, width - len(row):] = row
    return out


def widen(a: np.ndarray, width: int, fill: int) -> np.ndarray:
    """Left-pad [N, W] to [N, width] with `fill`."""
    return np.pad(a, ((0, 0), (width - a.shape[1], 0)), constant_values=fill)


def padded_width(lengths: Iterable[int], max_length: int, bucket: int) -> int:
    """max_length when bucket <= 0, else the longest row rounded up to a multiple of bucket (at most max_length)."""
    if bucket <= 0:
        return max_length
    return min(max_length, max(bucket, -(-max(lengths, default=1) // bucket) * bucket))


def encode_for_embedding(tokenizer, texts: Sequence[str], instruction: str | Sequence[str] = "",
                         max_length: int = 512, bucket: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, attention_mask, pool_mask), each int32 [N, W], for `texts` to be embedded by mean pooling.

    Row i is the chat template around `instruction + texts[i].strip()` (`instruction`: one string for all rows,
    or one per row), tokenised (no extra special tokens when the template writes its own), cut to `max_length`
    tokens from the right, and left-padded with eos. W = max_length, or with `bucket` > 0 the longest row rounded
    up to a multiple of bucket. pool_mask is 1 on the tokens of texts[i] itself. A row whose caption is cut away
    entirely has an empty pool mask (mean_pool then gives 0).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    instructions = [instruction] * len(texts) if isinstance(instruction, str) else list(instruction)
    if len(instructions) != len(texts):
        raise ValueError(f"{len(instructions)} instructions for {len(texts)} texts")
    parts = {i: template_parts(tokenizer, i) for i in set(instructions)}
    captions = [t.strip() for t in texts]
    prefixes = [parts[i][0] for i in instructions]
    full = [p + c + parts[i][1] for p, c, i in zip(prefixes, captions, instructions)]
    enc = tokenizer(full, add_special_tokens=not getattr(tokenizer, "chat_template", None), truncation=True,
                    max_length=max_length, return_offsets_mapping=True, return_attention_mask=False)
    rows, pools = enc["input_ids"], []
    for prefix, caption, offsets in zip(prefixes, captions, enc["offset_mapping"]):
        start, end = len(prefix), len(prefix) + len(caption)
        pools.append([int(e > s and s < end and e > start) for s, e in offsets])
    width = padded_width(map(len, rows), max_length, bucket)
    ids = left_pad(rows, width, eos_id(tokenizer))
    mask = left_pad([[1] * len(r) for r in rows], width, 0)
    return ids, mask, left_pad(pools, width, 0)


def encode_plain(tokenizer, texts: Sequence[str], max_length: int, bucket: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(ids, attention_mask) int32 [N, W] of raw texts with the tokenizer's own special tokens (e.g. bos), cut to
    max_length and left-padded with eos: the input of masked next-token prediction (LLM2Vec trains on raw text)."""
    rows = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length,
                     return_attention_mask=False)["input_ids"]
    width = padded_width(map(len, rows), max_length, bucket)
    return left_pad(rows, width, eos_id(tokenizer)), left_pad([[1] * len(r) for r in rows], width, 0)


def build_word_tokenizer(texts: Iterable[str], max_length: int = 512):
    """A word-level fast tokenizer over the lower-cased words and punctuation of `texts` (Whitespace
    pre-tokenizer: runs of word characters, runs of other non-space characters), with special tokens <pad>,
    <bos>, <eos>, <unk>, <mask> and chat roles <|user|>, <|assistant|> (ids 0..6), bos prepended like Llama 3,
    and CHAT_TEMPLATE. Words are numbered in sorted order, so the same texts give the same ids."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    splitter, lower = pre_tokenizers.Whitespace(), normalizers.Lowercase()
    words = sorted({w for t in texts for w, _ in splitter.pre_tokenize_str(lower.normalize_str(t))})
    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *(w for w in words if w not in SPECIAL_TOKENS)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer, tok.pre_tokenizer = lower, splitter
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                       special_tokens=[("<bos>", vocab["<bos>"])])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=max_length)
    fast.chat_template = CHAT_TEMPLATE
    return fast

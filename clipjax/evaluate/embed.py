"""Jitted, sharded encoders for evaluation: host data in, L2-normalised float32 [N, E] numpy out (same on every
process). Images can be streamed: each process decodes only the rows its devices hold."""
from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import jax
import numpy as np

from clipjax import sharding
from clipjax.data.hf_tokenizer import get_tokenizer
from clipjax.models import clip


class Embedder:
    """`params`: a params tree, or `clip.variables(params, batch_stats)` for a model with batch norm.
    `images(params, uint8 [N,H,W,3])`, `texts(params, list[str])`, `tokens(params, int [N,L])`, and
    `stream_images(params, n, fetch, image_shape)` for datasets too large to hold decoded."""

    def __init__(self, model, mesh: jax.sharding.Mesh, param_shardings, batch_size: int, text_length: int,
                 tokenizer: Callable | None = None):
        n = mesh.size
        self.batch_size = -(-batch_size // n) * n  # a multiple of the device count
        self.mesh, self.text_length = mesh, text_length
        self.tokenize = tokenizer or get_tokenizer("clip_bpe")
        out = sharding.replicated(mesh)
        self._images = jax.jit(
            lambda params, x, aux: (model.apply(clip.as_variables(params), x, method=model.encode_image), aux),
            in_shardings=(param_shardings, sharding.batch_sharding(mesh, 4), sharding.batch_sharding(mesh, 1)),
            out_shardings=(out, out))
        self._texts = jax.jit(lambda params, x: model.apply(clip.as_variables(params), x, method=model.encode_text),
                              in_shardings=(param_shardings, sharding.batch_sharding(mesh, 2)), out_shardings=out)

    def images(self, params, images: np.ndarray) -> np.ndarray:
        emb, _ = self.stream_images(params, len(images), lambda ids: (images[ids], np.zeros(len(ids), np.int32)),
                                    images.shape[1:])
        return emb

    def texts(self, params, texts: list[str]) -> np.ndarray:
        return self.tokens(params, self.tokenize(texts, context_length=self.text_length))

    def tokens(self, params, tokens: np.ndarray) -> np.ndarray:
        outs = []
        for s in range(0, len(tokens), self.batch_size):
            chunk = tokens[s:s + self.batch_size]
            padded = np.zeros((self.batch_size,) + chunk.shape[1:], chunk.dtype)
            padded[:len(chunk)] = chunk
            glob = jax.make_array_from_callback(padded.shape, sharding.batch_sharding(self.mesh, 2),
                                                lambda idx: padded[idx])
            outs.append(np.asarray(jax.device_get(self._texts(params, glob)))[:len(chunk)])
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def stream_images(self, params, n: int, fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                      image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Embed rows 0..n-1. `fetch(ids)` -> (uint8 [k, *image_shape], int32 aux [k]) for the global row ids this
        process needs (those its devices hold); the next batch is fetched while the current one runs.
        Returns (embeddings [n, E], aux [n]) gathered from all processes (aux: e.g. the label, -1 = bad image)."""
        bs = self.batch_size
        shape = (bs, *image_shape)
        img_sharding, aux_sharding = sharding.batch_sharding(self.mesh, 4), sharding.batch_sharding(self.mesh, 1)
        local = sorted({r for idx in img_sharding.addressable_devices_indices_map(shape).values()
                        for r in range(*idx[0].indices(bs))})
        starts = list(range(0, n, bs))

        def load(s):
            ids = np.array([s + r for r in local if s + r < n], np.int64)
            images = np.zeros(shape, np.uint8)
            aux = np.full((bs,), -1, np.int32)
            if len(ids):
                got, got_aux = fetch(ids)
                images[ids - s], aux[ids - s] = got, got_aux
            return images, aux

        embs, auxs = [], []
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(load, starts[0]) if starts else None
            for i, s in enumerate(starts):
                images, aux = pending.result()
                if i + 1 < len(starts):
                    pending = pool.submit(load, starts[i + 1])
                gi = jax.make_array_from_callback(shape, img_sharding, lambda idx: images[idx])
                ga = jax.make_array_from_callback((bs,), aux_sharding, lambda idx: aux[idx])
                emb, aux_all = jax.device_get(self._images(params, gi, ga))
                m = min(bs, n - s)
                embs.append(np.asarray(emb)[:m])
                auxs.append(np.asarray(aux_all)[:m])
        if not embs:
            return np.zeros((0, 0), np.float32), np.zeros((0,), np.int32)
        return np.concatenate(embs), np.concatenate(auxs)

"""LLM2CLIP stage 1 (arXiv 2411.04997): turn a decoder LM into a caption embedder, in three runs chosen by
`config.llm.stage`, each reading the previous one's Hugging Face folder and writing its own:

  clm   next-token pre-training of a tiny Llama from scratch on the built-in world's captions, with a word-level
        tokenizer built from them (so the whole chain runs on CPU without downloads)
  mntp  LLM2Vec (arXiv 2404.05961): bidirectional attention + masked next-token prediction (the output at i-1
        predicts masked token i), LoRA only; the adapters are merged into the saved weights
  cc    caption-contrastive fine-tuning (LLM2CLIP Sec. 3.1): two captions of one image are a positive pair, one of
        them carrying an instruction; InfoNCE over the global batch with hard negatives (clipjax.losses.
        caption_contrastive, inside shard_map), mean pooling over the caption's tokens; LoRA only, merged at the end

    python -m clipjax.llm_train --config configs/llm2clip/tiny_lm.py --workdir /tmp/llm2clip_tiny_lm

The step is pure: train_step(state, batch, base) -> (state, metrics); `state` holds what is trained (all weights
for clm, the 'lora' adapters otherwise), `base` the frozen weights (never donated or updated). Batches are a pure
function of (seed, step), so a resumed run (latest Orbax checkpoint in WORKDIR/checkpoints) sees the same data.
WORKDIR gets config.json, metrics.jsonl (train/loss ..., eval/* before training and at the end), the LoRA file
lora_adapters.safetensors (mntp, cc), and the output folder (llm.output, default WORKDIR/hf).
"""
import dataclasses
import functools
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P
from ml_collections import config_flags

from clipjax import checkpoint, config as config_lib, distributed, llm_text, optim, sharding
from clipjax.data import caption_pairs
from clipjax.losses import language_modeling as lm
from clipjax.losses.caption_contrastive import caption_contrastive_loss
from clipjax.metrics_writer import MetricWriter
from clipjax.models import llm, llm_loading, lora as lora_lib

STAGES = ("clm", "mntp", "cc")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
PREVIOUS = {"mntp": "the clm stage (configs/llm2clip/tiny_lm.py) or a downloaded Llama",
            "cc": "the mntp stage (configs/llm2clip/tiny_mntp.py)"}


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """The keys this trainer reads; a missing input folder or data file is named with its config key."""
    config_lib.check_keys(config)
    c, require = config.llm, lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(c.stage in STAGES, "llm.stage", f"one of {STAGES}")
    if c.stage != "clm":
        require(bool(c.folder), "llm.folder", f"the input Hugging Face folder, the output of {PREVIOUS[c.stage]}")
        if not os.path.isfile(os.path.join(c.folder, "config.json")):
            problem = "has no config.json" if os.path.isdir(c.folder) else "does not exist"
            raise FileNotFoundError(f"config.llm.folder = {c.folder!r}: the folder {problem}; expected a Hugging Face "
                                    f"folder, the output of {PREVIOUS[c.stage]}")
    kinds = [k.strip() for k in c.pairs.split(",")]
    require(set(kinds) <= set(caption_pairs.PAIR_KINDS) and (c.data == "builtin" or kinds == ["short_long"]),
            "llm.pairs", f"comma-separated kinds of {caption_pairs.PAIR_KINDS} ('paraphrase' on built-in data only)")
    files = "a CSV of caption pairs (header naming columns short,long)" + ("" if c.stage == "cc" else
                                                                           " or .txt files, comma-separated")
    for path in ([] if c.data == "builtin" else c.data.split(",")):
        require(os.path.isfile(path), "llm.data", f"'builtin' or {files}; file {path!r} does not exist")
        require(path.endswith(".csv") or (c.stage != "cc" and path.endswith(".txt")), "llm.data", files)
    require(c.stage != "cc" or "," not in c.data, "llm.data", files)
    require(c.dtype in DTYPES, "llm.dtype", f"one of {tuple(DTYPES)}")
    require(c.max_length >= 8, "llm.max_length", "at least 8 tokens")
    require(c.lora_rank > 0 and c.lora_alpha > 0 and 0 <= c.lora_dropout < 1, "llm.lora_rank",
            "rank > 0, alpha > 0 and dropout in [0, 1)")
    require(0 < c.mask_prob < 1 and 0 <= c.mask_replace_prob <= 1, "llm.mask_prob",
            "mask_prob in (0, 1) and mask_replace_prob in [0, 1]")
    require(c.eval_examples >= (2 if c.stage == "cc" else 0), "llm.eval_examples", "a count (>= 2 for cc)")
    require(config.batch_size > 0 and config_lib.resolve_total_steps(config) > 0, "batch_size",
            "a positive batch and run length")
    optim.validate(config)
    if num_devices is not None:
        data, fsdp, _ = sharding.mesh_shape(config.mesh, num_devices)
        require(config.batch_size % (data * fsdp) == 0, "batch_size",
                f"a multiple of the data-parallel size {data * fsdp}")


@flax.struct.dataclass
class LlmTrainState:
    step: jax.Array        # int32 []
    trainable: dict        # clm: all params; mntp / cc: the 'lora' adapters
    opt_state: optax.OptState
    rng: jax.Array
    nonfinite: jax.Array   # int32 []: consecutive skipped (non-finite) updates


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """The static settings of a stage's loss."""
    stage: str
    vocab_size: int = 0
    mask_id: int = 0
    mask_prob: float = 0.2
    replace_prob: float = 0.8
    scale: float = 50.0


def variables(spec: StepSpec, trainable: dict, base: dict) -> dict:
    return {"params": trainable} if spec.stage == "clm" else {"params": base, "lora": trainable}


def embed(module: llm.LlmDecoder, spec: StepSpec, trainable: dict, base: dict, ids, mask, pool,
          rng: jax.Array | None = None) -> jax.Array:
    """L2-normalised mean of the last hidden states over pool [N, T] -> [N, D] float32 (dropout when rng)."""
    kw = {"deterministic": True} if rng is None else {"deterministic": False, "rngs": {"dropout": rng}}
    h = module.apply(variables(spec, trainable, base), ids, mask, return_logits=False, **kw)["last_hidden"]
    z = llm.mean_pool(h, pool)
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)


def stage_loss(trainable: dict, base: dict, batch: dict, rng: jax.Array, *, module: llm.LlmDecoder,
               spec: StepSpec, mesh: jax.sharding.Mesh, train: bool = True) -> tuple[jax.Array, dict]:
    """(loss, metrics) of one batch. clm / mntp: ids, mask [B, T] (mntp: maskable [B, T]); cc: ids, mask, pool
    [B, 3, T] holding (query, document, hard negative) per row."""
    kw = {"deterministic": True} if not train else {"deterministic": False, "rngs": {"dropout": rng}}
    if spec.stage == "clm":
        out = module.apply(variables(spec, trainable, base), batch["ids"], batch["mask"], **kw)
        loss, acc = lm.shifted_cross_entropy(out["logits"], batch["ids"], lm.next_token_weights(batch["mask"]))
        return loss, {"accuracy": acc}
    if spec.stage == "mntp":
        inputs, selected = lm.mntp_mask(jax.random.fold_in(rng, 1), batch["ids"], batch["maskable"],
                                        mask_prob=spec.mask_prob, mask_id=spec.mask_id,
                                        replace_prob=spec.replace_prob, random_prob=(1 - spec.replace_prob) / 2,
                                        vocab_size=spec.vocab_size)
        out = module.apply(variables(spec, trainable, base), inputs, batch["mask"], **kw)
        loss, acc = lm.shifted_cross_entropy(out["logits"], batch["ids"], selected)
        return loss, {"accuracy": acc, "masked": selected.sum() / jnp.maximum(batch["maskable"].sum(), 1)}
    b, three, t = batch["ids"].shape
    flat = [batch[k].reshape(b * three, t) for k in ("ids", "mask", "pool")]
    z = embed(module, spec, trainable, base, *flat, rng=rng if train else None).reshape(b, three, -1)
    axes = sharding.BATCH_AXES
    loss_fn = jax.shard_map(functools.partial(caption_contrastive_loss, scale=spec.scale, axis_name=axes), mesh=mesh,
                            in_specs=(P(axes),) * 3, out_specs=(P(), P()))
    return loss_fn(z[:, 0], z[:, 1], z[:, 2])


def train_step(state: LlmTrainState, batch: dict, base: dict, *, loss_fn, tx: optax.GradientTransformation,
               lr_schedule: optax.Schedule) -> tuple[LlmTrainState, dict]:
    """One optimiser step on `state.trainable` (base frozen); a non-finite loss or gradient skips the update."""
    rng, step_rng = jax.random.split(state.rng)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable, base, batch, step_rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    state = LlmTrainState(step=state.step + 1, trainable=keep(trainable, state.trainable),
                          opt_state=keep(opt_state, state.opt_state), rng=rng,
                          nonfinite=jnp.where(finite, 0, state.nonfinite + 1))
    metrics = {f"train/{k}": v for k, v in metrics.items()} | {
        "train/loss": loss, "train/grad_norm": grad_norm, "train/lr": lr_schedule(state.step - 1),
        "train/skipped": 1 - finite.astype(jnp.int32), "train/nonfinite_in_row": state.nonfinite}
    return state, metrics


def scratch_model(config: ml_collections.ConfigDict, tokenizer) -> llm.LlmDecoder:
    """The clm stage's tiny Llama (llm.scratch sizes) over the tokenizer's vocabulary."""
    s, eos = config.llm.scratch, llm_text.eos_id(tokenizer)
    cfg = llm.LlmConfig(model_type="llama", vocab_size=len(tokenizer), hidden_size=s.hidden_size,
                        intermediate_size=s.intermediate_size, num_layers=s.num_layers, num_heads=s.num_heads,
                        num_kv_heads=s.num_kv_heads, head_dim=s.hidden_size // s.num_heads, rms_norm_eps=1e-5,
                        max_position_embeddings=max(config.llm.max_length, 128), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=(eos,))
    return llm.LlmDecoder(cfg, dtype=DTYPES[config.llm.dtype], param_dtype=jnp.float32, remat=config.llm.remat)


class Stage:
    """Data, tokenizer, model, sharded state and the jitted step of one stage (`config.llm.stage`)."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None):
        self.mesh = mesh or sharding.make_mesh(config.mesh)
        validate(config, self.mesh.size)
        c = config.llm
        self.train_data, self.eval_data = caption_pairs.load_stage_data(config)
        config = ml_collections.ConfigDict(config.to_dict())  # run length from the data actually read
        config.data.size = len(self.train_data)
        self.config, self.total_steps = config, config_lib.resolve_total_steps(config)
        rng = jax.random.PRNGKey(config.seed)  # raw uint32 [2] keys, as Orbax stores them
        if c.stage == "clm":
            texts = [*self.train_data, c.instruction_to_long, c.instruction_to_short]
            self.tokenizer = llm_text.build_word_tokenizer(texts)
            self.module = scratch_model(config, self.tokenizer)
            boxed_init = lambda r: self.module.init(r, jnp.zeros((1, 1), jnp.int32))["params"]  # noqa: E731
            shardings = sharding.param_shardings(jax.eval_shape(boxed_init, rng), self.mesh)
            trainable = jax.jit(lambda r: flax.linen.meta.unbox(boxed_init(r)), out_shardings=shardings)(rng)
            self.base, self.lora = {}, None
        else:
            self.tokenizer = llm_loading.load_tokenizer(c.folder)
            self.lora = lora_lib.LoraConfig(rank=c.lora_rank, alpha=c.lora_alpha, dropout=c.lora_dropout,
                                            targets=tuple(t.strip() for t in c.lora_targets.split(",")))
            self.module, self.base = llm_loading.from_pretrained(
                c.folder, dtype=DTYPES[c.dtype], mesh=self.mesh, causal=False, lora=self.lora, remat=c.remat)
            trainable = lora_lib.init_adapters(self.module, rng, self.mesh)
        self.spec = StepSpec(c.stage, vocab_size=len(self.tokenizer), mask_id=self._mask_id(), mask_prob=c.mask_prob,
                             replace_prob=c.mask_replace_prob, scale=c.scale)
        self.special = llm_text.special_ids(self.tokenizer)
        self.tx, self.lr_schedule = optim.make_optimizer(config, trainable)
        repl = sharding.replicated(self.mesh)
        state = LlmTrainState(step=jnp.zeros((), jnp.int32), trainable=trainable, opt_state=jax.jit(self.tx.init)(
            trainable), rng=jax.random.split(rng)[1], nonfinite=jnp.zeros((), jnp.int32))
        # scalars (step, Adam's count) replicated over the mesh; the rest keeps the trainable leaves' shardings
        self.state = jax.tree.map(
            lambda x: x if getattr(x.sharding, "mesh", None) == self.mesh else jax.device_put(x, repl), state)
        self.state_shardings = jax.tree.map(lambda x: x.sharding, self.state)
        self.loss_fn = functools.partial(stage_loss, module=self.module, spec=self.spec, mesh=self.mesh)
        self.step_fn = jax.jit(sharding.in_mesh(functools.partial(train_step, loss_fn=self.loss_fn, tx=self.tx,
                                                                  lr_schedule=self.lr_schedule), self.mesh),
                               out_shardings=(self.state_shardings, repl), donate_argnums=0)
        self.eval_loss = jax.jit(functools.partial(self.loss_fn, train=False))
        self.embed = jax.jit(functools.partial(embed, self.module, self.spec))

    def _mask_id(self) -> int:
        c = self.config.llm
        if c.stage != "mntp":
            return 0
        token = c.mask_token or self.tokenizer.mask_token or "_"  # '_': LLM2Vec's mask for Llama tokenizers
        ids = self.tokenizer.convert_tokens_to_ids([token])
        if ids[0] is None or ids[0] == self.tokenizer.unk_token_id:
            raise ValueError(f"config.llm.mask_token = {c.mask_token!r}: {token!r} is not one token of the tokenizer "
                             f"in {c.folder}")
        return int(ids[0])

    def host_batch(self, step: int, texts_or_table=None, rows=None) -> dict[str, np.ndarray]:
        """The batch of 0-based `step` (rows drawn by caption_pairs.epoch_rows), or of the given rows."""
        c, data = self.config.llm, self.train_data if texts_or_table is None else texts_or_table
        if rows is None:
            rows = caption_pairs.epoch_rows(len(data), self.config.batch_size, self.config.seed, step)
        rng = np.random.default_rng((self.config.seed, step + 1, 7))  # step -1: evaluation
        tok, length, bucket = self.tokenizer, c.max_length, c.pad_bucket
        if c.stage == "clm":  # the chat-wrapped captions, with an instruction one time in three each
            instr = np.array(["", c.instruction_to_long, c.instruction_to_short])[rng.integers(3, size=len(rows))]
            ids, mask, _ = llm_text.encode_for_embedding(tok, [data[i] for i in rows], list(instr), length, bucket)
            return {"ids": ids, "mask": mask}
        if c.stage == "mntp":  # raw text with the tokenizer's own bos (LLM2Vec)
            ids, mask = llm_text.encode_plain(tok, [data[i] for i in rows], length, bucket)
            return {"ids": ids, "mask": mask, "maskable": mask * ~np.isin(ids, self.special)}
        t = caption_pairs.draw_triples(data, rows, rng, [k.strip() for k in c.pairs.split(",")])
        instr = [c.instruction_to_long if up else c.instruction_to_short for up in t["to_long"]]
        parts = [llm_text.encode_for_embedding(tok, t["query"], instr, length, bucket),
                 llm_text.encode_for_embedding(tok, t["document"], "", length, bucket),
                 llm_text.encode_for_embedding(tok, t["negative"], "", length, bucket)]
        width = max(p[0].shape[1] for p in parts)
        pad = llm_text.eos_id(tok)
        return {k: np.stack([llm_text.widen(p[j], width, pad if k == "ids" else 0) for p in parts], axis=1)
                for j, k in enumerate(("ids", "mask", "pool"))}

    def to_device(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Host arrays (the same global batch on every process) -> global arrays split over the batch axes."""
        return {k: jax.make_array_from_callback(v.shape, sharding.batch_sharding(self.mesh, v.ndim),
                                                lambda index, v=v: v[index]) for k, v in batch.items()}

    def evaluate(self, trainable: dict) -> dict[str, float]:
        """clm / mntp: held-out loss and accuracy (fixed masks); cc: caption-to-caption R@1 on held-out images."""
        if not len(self.eval_data):
            return {}
        if self.spec.stage != "cc":
            n, b = len(self.eval_data), self.config.batch_size
            rows = np.arange(max(b, n - n % b)) % n  # whole batches
            sums = np.zeros(2)
            for i in range(0, len(rows), b):
                batch = self.to_device(self.host_batch(-1, self.eval_data, rows[i:i + b]))
                loss, m = self.eval_loss(trainable, self.base, batch, jax.random.PRNGKey(i))
                sums += (float(loss), float(m["accuracy"]))
            loss, acc = sums / (len(rows) // b)
            return {"eval/loss": loss, "eval/accuracy": acc}
        c, table = self.config.llm, self.eval_data
        r1 = functools.partial(self._r1, trainable)
        out = {"eval/r1_short_to_long": r1(table.short, table.long, c.instruction_to_long),
               "eval/r1_short_to_long_plain": r1(table.short, table.long, "")}
        if table.rewrites is not None:  # a paraphrase finds a phrasing of its image
            queries, docs = [r[0] for r in table.rewrites], [p[0] for p in table.phrasings]
            instr = [c.instruction_to_long if len(q) <= len(d) else c.instruction_to_short
                     for q, d in zip(queries, docs)]
            out["eval/r1_paraphrase"] = r1(queries, docs, instr)
        return out

    def _r1(self, trainable, queries, documents, instruction) -> float:
        """Fraction of queries whose most similar document (cosine) is their own."""
        q, d = self.embed_texts(trainable, queries, instruction), self.embed_texts(trainable, documents, "")
        return float(np.mean(np.argmax(q @ d.T, axis=1) == np.arange(len(q))))

    def embed_texts(self, trainable: dict, texts, instruction) -> np.ndarray:
        """[N, D] float32 normalised embeddings of texts (chunks of batch_size; the last one filled with row 0,
        as a fully padded row would attend to nothing)."""
        ids, mask, pool = llm_text.encode_for_embedding(self.tokenizer, texts, instruction, self.config.llm.max_length,
                                                        self.config.llm.pad_bucket)
        n, chunk = len(texts), self.config.batch_size
        arrays = [np.concatenate([a, np.repeat(a[:1], -n % chunk, 0)]) for a in (ids, mask, pool)]
        out = []
        for i in range(0, len(arrays[0]), chunk):
            batch = self.to_device(dict(zip(("ids", "mask", "pool"), (a[i:i + chunk] for a in arrays))))
            z = self.embed(trainable, self.base, batch["ids"], batch["mask"], batch["pool"])
            out.append(np.asarray(multihost_utils.process_allgather(z, tiled=True)))
        return np.concatenate(out)[:n]

    def save_outputs(self, state: LlmTrainState, workdir: str) -> str:
        """Write the output Hugging Face folder (weights, merged for LoRA stages; tokenizer; clipjax_llm2clip.json)
        and, for LoRA stages, WORKDIR/lora_adapters.safetensors. Returns the folder."""
        c = self.config.llm
        folder = c.output or os.path.join(workdir, "hf")
        trainable = host_tree(state.trainable)
        params = trainable if self.lora is None else host_tree(lora_lib.merge(
            self.base, state.trainable, alpha=self.lora.alpha, rank=self.lora.rank))
        if jax.process_index() == 0:
            llm_loading.save_pretrained(self.module, params, folder)
            self.tokenizer.save_pretrained(folder)
            if self.lora is not None:
                lora_lib.save_adapters(os.path.join(workdir, "lora_adapters.safetensors"), trainable, self.lora)
            with open(os.path.join(folder, "clipjax_llm2clip.json"), "w") as f:
                json.dump({"stage": c.stage, "causal": c.stage == "clm", "pooling": "mean over the caption's tokens",
                           "instruction_to_long": c.instruction_to_long, "max_length": c.max_length}, f, indent=2)
        return folder


def host_tree(tree):
    """Every leaf as a whole numpy array on every process (gathered leaf by leaf)."""
    return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)


def run(config: ml_collections.ConfigDict, workdir: str, stop_at: int | None = None) -> dict[str, float]:
    """Train the configured stage in `workdir` (resuming from its latest checkpoint), evaluate before and after,
    write the output folder; returns the last metrics (with 'output': the folder). `stop_at`: leave after that
    step, checkpointed, as a preempted run would."""
    is_main = jax.process_index() == 0
    stage = Stage(config)
    config, total = stage.config, stage.total_steps
    os.makedirs(workdir, exist_ok=True)
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    ckpt = checkpoint.Checkpointer(workdir, config.checkpoint)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), stage.state)
    start, restored = ckpt.restore_latest(abstract)
    state, start = (stage.state, 0) if start is None else (restored, start)
    if start and is_main:
        print(f"resumed from step {start}: {ckpt.step_dir(start)}", flush=True)
    writer = MetricWriter(workdir, enabled=is_main, resume_step=start)
    final = {}

    def log(step: int, metrics: dict) -> None:
        final.update(metrics)
        writer.write(step, metrics)
        if is_main:
            print(f"step {step}: " + json.dumps({k: round(v, 4) for k, v in sorted(metrics.items())}), flush=True)

    if start == 0:
        log(0, stage.evaluate(state.trainable))
    end, t_last, n_last, reached = min(total, stop_at or total), time.perf_counter(), start, start
    for step in range(start + 1, end + 1):
        state, metrics = stage.step_fn(state, stage.to_device(stage.host_batch(step - 1)), stage.base)
        if step % config.log_every_steps == 0 or step == end:
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            m["train/examples_per_sec"] = (step - n_last) * config.batch_size / (now - t_last)
            t_last, n_last = now, step
            log(step, m)
            if m["train/nonfinite_in_row"] >= config.max_nonfinite_in_row:  # a streak running at a log step
                raise FloatingPointError(f"step {step}: {int(m['train/nonfinite_in_row'])} non-finite losses in a "
                                         f"row (config.max_nonfinite_in_row); lower optim.lr or check the data")
        every = config.llm.eval_every_steps
        if step == total or (every > 0 and step % every == 0):
            log(step, stage.evaluate(state.trainable))
        preempted = distributed.preemption_requested(step)
        if step % config.checkpoint.every_steps == 0 or step == end or preempted:
            ckpt.save(step, state)
        reached = step
        if preempted:
            break
    ckpt.wait()
    ckpt.close()
    if start >= total:
        final.update(stage.evaluate(state.trainable))
    if reached >= total:
        final["output"] = stage.save_outputs(state, workdir)
        if is_main:
            print(f"wrote {final['output']}", flush=True)
    writer.close()
    return final


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    distributed.initialize(num_cpu_devices=FLAGS.num_cpu_devices)
    run(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "configs/llm2clip/NAME.py", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, config.json and outputs.")
    flags.DEFINE_integer("num_cpu_devices", 0, "Simulate this many CPU devices (0: platform default).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)

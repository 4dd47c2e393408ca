"""Bytes each device communicates per step, read from the compiled HLO: CLIP's gather-with-gradient softmax loss
vs the GCL-family losses with FastCLIP's reduction.

python -m clipjax.tools.comm_bytes [--devices 8 --batch 1024 --dim 512 --losses clip,fastclip_v3,fastclip_v2]

The step compiled is the loss's value_and_grad through two linear projections (replicated [dim, dim] weights, so
every loss also all-reduces the same 2 dim^2 weight gradients, as a model would), with the global batch split over
the devices. Collectives (all-gather, all-reduce, reduce-scatter, collective-permute, all-to-all) are parsed from
`jax.jit(...).lower(...).compile().as_text()`: per op kind the operand and result bytes of one device, and the
bytes a ring implementation sends per device ((n-1)/n x result for all-gather, (n-1)/n x operand for
reduce-scatter, 2 (n-1)/n x operand for all-reduce, operand for permute / all-to-all), computed from the result
shapes, which the compiled text always prints (operands are printed by name and looked up, best effort).
"""
import argparse
import collections
import os
import re

DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
               "f64": 8, "s64": 8, "u64": 8}
KINDS = ("all-gather", "all-reduce", "reduce-scatter", "collective-permute", "all-to-all")
_SHAPE = re.compile(r"\b(" + "|".join(DTYPE_BYTES) + r")\[([0-9,]*)\]")
_DEF = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([\w\-]+)\((.*?)\)(?:,|$)")


def shape_bytes(text: str) -> int:
    """Total bytes of every array shape written in `text` (e.g. '(f32[8,16]{1,0}, s32[])')."""
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        total += n * DTYPE_BYTES[dtype]
    return total


def collectives(hlo_text: str) -> list[tuple[str, int, int]]:
    """(kind, operand bytes, result bytes) of each collective in compiled HLO text (async pairs counted once).
    Operands are printed by name, so their shapes are looked up in the instructions that define them."""
    defs, ops = {}, []
    for line in hlo_text.splitlines():
        m = _DEF.match(line)
        if not m:
            continue
        name, result, op, operands = m.groups()
        defs[name] = result
        kind = op.removesuffix("-start")
        if kind in KINDS:
            names = [o.strip().lstrip("%") for o in operands.split(",") if o.strip().startswith("%")]
            typed = shape_bytes(operands)  # some printers write the operand types inline
            ops.append((kind, typed or sum(shape_bytes(defs.get(n, "")) for n in names), shape_bytes(result)))
    return ops


def wire_bytes(kind: str, result: int, n: int) -> float:
    """Bytes one device sends in a ring implementation, from the collective's result size (operand = result for
    all-reduce, permute and all-to-all; result / n for all-gather; n x result for reduce-scatter)."""
    if kind == "all-gather":
        return result * (n - 1) / n
    if kind == "reduce-scatter":
        return float(result * (n - 1))
    if kind == "all-reduce":
        return 2 * result * (n - 1) / n
    return float(result)


def measure(loss_name: str, n: int, batch: int, dim: int) -> dict:
    """Compile one step of `loss_name` on an n-device data mesh; per-kind and total bytes per device."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    from clipjax import config as config_lib
    from clipjax.losses import contrastive, fastclip

    mesh = jax.make_mesh((n, 1, 1), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3,
                         devices=jax.devices()[:n])
    axes = ("data", "fsdp")
    rows, repl = NamedSharding(mesh, P(axes)), NamedSharding(mesh, P())
    norm = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    if loss_name == "clip":
        loss_fn = contrastive.sharded(contrastive.softmax_loss, mesh, axes)
        state = {}
        call = lambda zi, zt, ls, index, state: (loss_fn(zi, zt, ls)[0], state)  # noqa: E731
    else:
        cfg = config_lib.default_config()
        cfg.loss.name, cfg.batch_size, cfg.data.size, cfg.loss.shard_state_above = loss_name, batch, 100 * batch, 1 << 30
        hp = fastclip.hparams(cfg)
        loss_fn = fastclip.make_loss(loss_name, mesh, hp, axes)
        state = fastclip.init_state(loss_name, 100 * batch, mesh, hp, axes)
        call = lambda zi, zt, ls, index, state: loss_fn(zi, zt, ls, index, state, jnp.int32(200))[::2]  # noqa: E731

    def step(params, x_img, x_txt, index, state):
        def objective(params):
            value, new_state = call(norm(x_img @ params["w_img"]), norm(x_txt @ params["w_txt"]),
                                    params["logit_scale"], index, state)
            return value, new_state
        return jax.value_and_grad(objective, has_aux=True)(params)

    params = {"w_img": jnp.zeros((dim, dim)), "w_txt": jnp.zeros((dim, dim)), "logit_scale": jnp.float32(2.6)}
    args = (jax.device_put(params, repl), jax.device_put(jnp.zeros((batch, dim)), rows),
            jax.device_put(jnp.zeros((batch, dim)), rows), jax.device_put(jnp.arange(batch, dtype=jnp.int32), rows),
            state)
    text = jax.jit(step).lower(*args).compile().as_text()
    per_kind = collections.defaultdict(lambda: [0, 0, 0, 0.0])
    for kind, operand, result in collectives(text):
        k = per_kind[kind]
        k[0] += 1
        k[1] += operand
        k[2] += result
        k[3] += wire_bytes(kind, result, n)
    return {"per_kind": dict(per_kind), "wire_bytes": sum(v[3] for v in per_kind.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1024, help="global batch")
    parser.add_argument("--dim", type=int, default=512, help="embedding width (and projection input width)")
    parser.add_argument("--losses", default="clip,fastclip_v3,fastclip_v2")
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    if os.environ["JAX_PLATFORMS"] == "cpu":  # simulated devices
        jax.config.update("jax_num_cpu_devices", args.devices)
    n = args.devices
    common = 2 * (2 * args.dim * args.dim * 4) * (n - 1) / n  # ring all-reduce of the two weight gradients
    print(f"{n} devices, global batch {args.batch}, dim {args.dim}: bytes per device per step; every loss also "
          f"all-reduces the projection-weight gradients ({common:.0f} wire bytes)")
    loss_bytes = {}
    for name in args.losses.split(","):
        r = measure(name, n, args.batch, args.dim)
        loss_bytes[name] = r["wire_bytes"] - common
        print(f"\n{name}: wire bytes {r['wire_bytes']:.0f}, of which the loss's {loss_bytes[name]:.0f}")
        for kind, (count, operand, result, wire) in sorted(r["per_kind"].items()):
            print(f"  {kind:18s} x{count:<3d} operand {operand:>10d}  result {result:>10d}  wire {wire:>12.0f}")
    if loss_bytes.get("clip"):
        for name, b in loss_bytes.items():
            if name != "clip":
                print(f"loss communication {name} / clip = {b / loss_bytes['clip']:.3f}")


if __name__ == "__main__":
    main()

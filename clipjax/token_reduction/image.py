"""Image token reduction (FLIP / CLIPA): which patch tokens of each image the ViT keeps.

Pure functions of an rng and static sizes; they return `patch_keep`, int32 [B, K] indices into the
N = grid_h * grid_w patches (row-major), sorted ascending, for `VisionTransformer(images, patch_keep)`.
K is static (a Python int fixed by the strategy and the sizes), so nothing has a dynamic shape; the ViT gathers
with `take_along_axis` on the batch axis, which stays batch-sharded under GSPMD. The CLS token is never
indexed here: the ViT prepends it after the gather, so it is always kept.

Strategies (FLIP arXiv 2212.00794 Sec. 3; CLIPA arXiv 2305.07017 Sec. 3.1), each independent per sample:
  random  uniform random subset of K patches: per-sample uniform noise [N], argsort, keep the first K (FLIP).
  grid    one patch per s x s window: a per-sample offset (dy, dx) in [0, s)^2 shared by all windows, keep
          patches (s*i + dy, s*j + dx) for i < grid_h // s, j < grid_w // s; K = (grid_h // s) * (grid_w // s).
  block   one contiguous bh x bw rectangle at a uniformly random position; (bh, bw) is the most nearly square
          rectangle that fits the grid with area closest to the requested K (`block_shape`), so K = bh * bw.
Resize (the best CLIPA strategy) is not a mask: it is the data pipeline's image size.
"""
import jax
import jax.numpy as jnp

IMAGE_STRATEGIES = ("none", "random", "grid", "block")


def requested_count(num_patches: int, keep_ratio: float = 1.0, keep_count: int = -1) -> int:
    """K asked for: `keep_count` when > 0, else round(keep_ratio * N), at least 1 and at most N."""
    k = keep_count if keep_count > 0 else int(round(keep_ratio * num_patches))
    if not 1 <= k <= num_patches:
        raise ValueError(f"kept patch count {k} (ratio {keep_ratio}, count {keep_count}) is outside [1, {num_patches}]")
    return k


def grid_stride(grid_h: int, grid_w: int, keep: int) -> int:
    """Window size s with (grid_h // s) * (grid_w // s) == keep; ValueError naming the possible counts if none."""
    options = {(grid_h // s) * (grid_w // s): s for s in range(min(grid_h, grid_w), 0, -1)}
    if keep not in options:
        raise ValueError(f"grid masking on a {grid_h}x{grid_w} patch grid keeps one of {sorted(options)} patches "
                         f"(one per s x s window), not {keep}; e.g. keep ratio 1/s^2")
    return options[keep]


def block_shape(grid_h: int, grid_w: int, keep: int) -> tuple[int, int]:
    """(bh, bw) with bh <= grid_h, bw <= grid_w minimising |bh * bw - keep|, then |bh - bw|, then preferring the
    smaller area."""
    best = min(((bh, bw) for bh in range(1, grid_h + 1) for bw in range(1, grid_w + 1)),
               key=lambda s: (abs(s[0] * s[1] - keep), abs(s[0] - s[1]), s[0] * s[1]))
    return best


def kept_count(strategy: str, grid_h: int, grid_w: int, keep_ratio: float = 1.0, keep_count: int = -1) -> int:
    """The static K that `patch_keep` gives for these settings (N for 'none')."""
    n = grid_h * grid_w
    if strategy == "none":
        return n
    k = requested_count(n, keep_ratio, keep_count)
    if strategy == "random":
        return k
    if strategy == "grid":
        grid_stride(grid_h, grid_w, k)
        return k
    if strategy == "block":
        bh, bw = block_shape(grid_h, grid_w, k)
        return bh * bw
    raise ValueError(f"image token strategy {strategy!r}: expected one of {IMAGE_STRATEGIES}")


def random_keep(rng: jax.Array, batch: int, grid_h: int, grid_w: int, keep: int) -> jax.Array:
    """FLIP random masking: argsort of per-sample uniform noise, first `keep` -> int32 [B, keep] (sorted)."""
    noise = jax.random.uniform(rng, (batch, grid_h * grid_w))
    return jnp.sort(jnp.argsort(noise, axis=1)[:, :keep], axis=1).astype(jnp.int32)


def grid_keep(rng: jax.Array, batch: int, grid_h: int, grid_w: int, keep: int) -> jax.Array:
    """One patch per s x s window at a per-sample random offset -> int32 [B, keep] (row-major, sorted)."""
    s = grid_stride(grid_h, grid_w, keep)
    offset = jax.random.randint(rng, (batch, 2), 0, s)
    rows = s * jnp.arange(grid_h // s)[None, :] + offset[:, :1]          # [B, gh // s]
    cols = s * jnp.arange(grid_w // s)[None, :] + offset[:, 1:]          # [B, gw // s]
    return (rows[:, :, None] * grid_w + cols[:, None, :]).reshape(batch, keep).astype(jnp.int32)


def block_keep(rng: jax.Array, batch: int, grid_h: int, grid_w: int, keep: int) -> jax.Array:
    """One bh x bw rectangle (`block_shape`) at a per-sample random top-left corner -> int32 [B, bh * bw]."""
    bh, bw = block_shape(grid_h, grid_w, keep)
    ry, rx = jax.random.split(rng)
    top = jax.random.randint(ry, (batch, 1), 0, grid_h - bh + 1)
    left = jax.random.randint(rx, (batch, 1), 0, grid_w - bw + 1)
    rows = top + jnp.arange(bh)[None]
    cols = left + jnp.arange(bw)[None]
    return (rows[:, :, None] * grid_w + cols[:, None, :]).reshape(batch, bh * bw).astype(jnp.int32)


_KEEP_FNS = {"random": random_keep, "grid": grid_keep, "block": block_keep}


def patch_keep(rng: jax.Array, strategy: str, batch: int, grid_h: int, grid_w: int, keep_ratio: float = 1.0,
               keep_count: int = -1) -> jax.Array | None:
    """int32 [batch, K] kept patch indices for `strategy` (K = `kept_count(...)`), or None for 'none'."""
    if strategy == "none":
        return None
    if strategy not in _KEEP_FNS:
        raise ValueError(f"image token strategy {strategy!r}: expected one of {IMAGE_STRATEGIES}")
    k = requested_count(grid_h * grid_w, keep_ratio, keep_count)
    return _KEEP_FNS[strategy](rng, batch, grid_h, grid_w, k)


def image_grid(image_size: int, patch_size: int) -> tuple[int, int]:
    """(grid_h, grid_w) of square images."""
    return image_size // patch_size, image_size // patch_size


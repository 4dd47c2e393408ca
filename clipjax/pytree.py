"""Nested parameter dicts <-> flat {'a/b/c': leaf} dicts (checkpoint surgery, weight conversion)."""


def flatten(tree, prefix: str = "") -> dict:
    """Nested mapping -> {'a/b/c': leaf}."""
    out = {}
    for k, v in tree.items():
        if hasattr(v, "items"):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat: dict) -> dict:
    """{'a/b/c': leaf} -> nested dicts."""
    tree: dict = {}
    for path, v in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree

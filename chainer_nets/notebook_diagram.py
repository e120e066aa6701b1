"""Block diagrams for the paper notebooks: :func:`draw_block` draws a block, top to bottom, from
a short text description (re-exported by :mod:`chainer_nets.notebook`)."""

from __future__ import annotations

import re

_OPS = {"+", "×", "*", "⊕", "⊙", "−", "mean", "max", "concat", "join", "gate"}
_COLOURS = [
    (("conv", "linear", "fc", "w_", "h("), "#cfe2f3"),
    (("bn", "batch"), "#fff2cc"),
    (("relu", "σ", "sigmoid", "tanh", "softmax"), "#d9ead3"),
    (("drop", "gate", "bernoulli", "t(", "1−t", "1-t", "scale", "λ"), "#f4cccc"),
    (("pool", "avg", "shortcut", "pad", "identity"), "#e6e6e6"),
]


def _parse_block(description: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Nodes (in order of appearance) and (from, to, label) edges of a block description."""
    nodes: list[str] = []
    edges: list[tuple[str, str, str]] = []
    for chain in re.split(r"[;\n]", description):
        if not chain.strip():
            continue
        parts = re.split(r"\s*-(?:\[([^\]]*)\]-)?>\s*", chain.strip())
        names, labels = parts[0::2], parts[1::2]
        for n in names:
            if not n:
                raise ValueError(f"empty node in {chain!r}")
            if n not in nodes:
                nodes.append(n)
        for a, b, lab in zip(names[:-1], names[1:], labels, strict=True):
            edges.append((a, b, lab or ""))
    return nodes, edges


def _layers(nodes: list[str], edges: list[tuple[str, str, str]]) -> dict[str, int]:
    """Longest-path depth of each node from the inputs (raises on a cycle)."""
    depth = {n: 0 for n in nodes}
    for _ in range(len(nodes) + 1):
        changed = False
        for a, b, _lab in edges:
            if depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            return depth
    raise ValueError("the block description has a cycle")


def draw_block(description: str, title: str = "", note: str = ""):
    """Draw a block as a top-to-bottom diagram from a short text description; return the figure.

    ``description`` lists paths separated by ``;`` or new lines, each ``a -> b -> c``; an
    edge may carry a label, ``a -[identity]-> +``. A node's text is its name up to ``#``
    (``BN#1`` and ``BN#2`` are two boxes labelled ``BN``). Operators (``+``, ``×``, ``mean``,
    ``concat``) are drawn as circles, inputs and outputs as plain text, layers as boxes coloured
    by kind (convolution, normalisation, non-linearity, gate or drop, pooling or shortcut).
    Edges that skip layers run along the side, so the main path stays a straight column.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyBboxPatch

    nodes, edges = _parse_block(description)
    depth = _layers(nodes, edges)
    n_layers = max(depth.values()) + 1
    by_layer: dict[int, list[str]] = {}
    for n in nodes:
        by_layer.setdefault(depth[n], []).append(n)
    dx, dy, box_h = 2.6, 0.62, 0.38
    pos, half_w = {}, {}
    has_in = {b for _a, b, _lab in edges}
    has_out = {a for a, _b, _lab in edges}
    for k, row in by_layer.items():
        for i, n in enumerate(row):
            pos[n] = ((i - (len(row) - 1) / 2) * dx, -k * dy)
            text = n.split("#")[0]
            half_w[n] = 0.18 if text in _OPS else max(0.45, 0.055 * len(text) + 0.2)
    fig, ax = plt.subplots(dpi=90)
    for n in nodes:
        x, y = pos[n]
        text = n.split("#")[0]
        if text in _OPS:
            ax.add_patch(Circle((x, y), 0.17, fc="white", ec="black", lw=1, zorder=3))
            ax.text(x, y, text, ha="center", va="center", fontsize=10, zorder=4)
        elif n not in has_in or n not in has_out:  # the block's input or output
            ax.text(x, y, text, ha="center", va="center", fontsize=10, style="italic", zorder=4)
        else:
            low = text.lower()
            colour = next((c for keys, c in _COLOURS if any(k in low for k in keys)), "#f3f3f3")
            w = half_w[n]
            ax.add_patch(
                FancyBboxPatch(
                    (x - w, y - box_h / 2),
                    2 * w,
                    box_h,
                    boxstyle="round,pad=0.02,rounding_size=0.08",
                    fc=colour,
                    ec="#555555",
                    lw=0.8,
                    zorder=3,
                )
            )
            ax.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=4)
    arrow = dict(arrowstyle="-|>", color="#333333", lw=1, shrinkA=0, shrinkB=0)
    right_edge = max(pos[n][0] + half_w[n] for n in nodes)
    left_edge = min(pos[n][0] - half_w[n] for n in nodes)
    side_used = {1: 0, -1: 0}
    x_min, x_max = left_edge, right_edge
    for a, b, lab in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        top_b = yb + (0.17 if b.split("#")[0] in _OPS else box_h / 2)
        bottom_a = ya - (0.17 if a.split("#")[0] in _OPS else box_h / 2)
        if depth[b] - depth[a] == 1 or abs(xa - xb) > 1e-9:
            ax.annotate("", xy=(xb, top_b), xytext=(xa, bottom_a), arrowprops=arrow, zorder=2)
            if lab:
                ax.text(
                    (xa + xb) / 2 + 0.08,
                    (bottom_a + top_b) / 2,
                    lab,
                    fontsize=7.5,
                    color="#444444",
                    va="center",
                )
            continue
        side = 1 if xa >= 0 else -1
        side_used[side] += 1
        xs = (right_edge if side > 0 else left_edge) + side * 0.35 * side_used[side]
        x_min, x_max = min(x_min, xs), max(x_max, xs)
        ax.plot([xa + side * half_w[a], xs, xs], [ya, ya, yb], color="#333333", lw=1, zorder=2)
        ax.annotate("", xy=(xb + side * half_w[b], yb), xytext=(xs, yb), arrowprops=arrow)
        if lab:
            ax.text(
                xs + side * 0.06,
                (ya + yb) / 2,
                lab,
                fontsize=7.5,
                color="#444444",
                va="center",
                ha="left" if side > 0 else "right",
                rotation=0,
            )
            if side > 0:
                x_max = max(x_max, xs + 0.085 * len(lab) + 0.1)
            else:
                x_min = min(x_min, xs - 0.085 * len(lab) - 0.1)
    ax.set_xlim(x_min - 0.3, x_max + 0.3)
    ax.set_ylim(-(n_layers - 1) * dy - 0.4, 0.4)
    inch = 0.75  # per unit of the layout, so that text and boxes keep their proportions
    fig.set_size_inches(
        max(3.0, (x_max - x_min + 0.6) * inch), ((n_layers - 1) * dy + 0.8) * inch + 0.5
    )
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.5, 0.01, note, ha="center", fontsize=8, color="#444444")
    fig.tight_layout()
    plt.show()
    return fig

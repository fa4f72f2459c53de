r"""The sum tree of proportional prioritized replay: set priorities, sample by prefix sums.

Reference: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG"
(prioritized experience replay); T. Schaul, J. Quan, I. Antonoglou,
D. Silver, "Prioritized Experience Replay", ICLR 2016, section 3.3 and
Appendix B.2.1 (the sum tree).

Layout: ``tree`` is a float64 array of length 2 L, L a power of two (the
leaves).  Leaf k (k = 0..L-1) is ``tree[L + k]``; node i >= 1 holds
``tree[i] = tree[2 i] + tree[2 i + 1]``, so ``tree[1]`` is the total and
``tree[0]`` is unused.  Every internal node is recomputed as the sum of its
two children (never updated by adding a difference), so a node's value is
a function of the leaves alone: no drift, and a tree rebuilt from its
leaves is bitwise the same.

Finding the leaf of a value u in [0, total): from the root, go left when
u < left child's sum, else subtract it and go right.  Leaf k is found for
the u in an interval of length ``tree[L + k]``, so u ~ U[0, total) draws
leaf k with probability tree[L + k] / total, in O(log L).  A leaf of
priority 0 is never found: where rounding leaves u at or above a node's
left sum but its right child's sum is 0, the descent goes left.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["sum_tree_update", "sum_tree_update_numba", "sum_tree_update_numpy",
           "sum_tree_find", "sum_tree_find_numba", "sum_tree_find_numpy", "sum_tree_leaves"]


@njit(cache=True)
def sum_tree_update_numba(tree, leaf_indices, priorities):
    """Set leaves ``leaf_indices`` to ``priorities`` (in order: a repeated index keeps the
    last), then recompute their ancestors; numba kernel, no validation."""
    leaves = tree.shape[0] // 2
    for k in range(leaf_indices.shape[0]):
        node = leaves + leaf_indices[k]
        tree[node] = priorities[k]
        node //= 2
        while node >= 1:
            tree[node] = tree[2 * node] + tree[2 * node + 1]
            node //= 2


def sum_tree_update_numpy(tree, leaf_indices, priorities):
    """The update, NumPy twin: the leaves first, then the ancestors level by level
    (each level's distinct parents recomputed from their children at once)."""
    leaves = tree.shape[0] // 2
    idx = np.asarray(leaf_indices, dtype=np.int64)
    if idx.size == 0:
        return
    # a repeated index keeps its last priority, as the kernel's sequential writes do
    last = idx.size - 1 - np.unique(idx[::-1], return_index=True)[1]
    tree[leaves + idx[last]] = np.asarray(priorities, dtype=np.float64)[last]
    nodes = np.unique((leaves + idx) // 2)
    while nodes[0] >= 1:
        tree[nodes] = tree[2 * nodes] + tree[2 * nodes + 1]
        nodes = np.unique(nodes // 2)


@njit(cache=True)
def sum_tree_find_numba(tree, values):
    """The leaf index found for each value (descent from the root); numba, no validation."""
    leaves = tree.shape[0] // 2
    out = np.empty(values.shape[0], dtype=np.int64)
    for k in range(values.shape[0]):
        u = values[k]
        node = 1
        while node < leaves:
            left = 2 * node
            if u < tree[left] or tree[left + 1] <= 0.0:
                node = left
            else:
                u -= tree[left]
                node = left + 1
        out[k] = node - leaves
    return out


def sum_tree_find_numpy(tree, values):
    """The search, NumPy twin: every value descends one level per pass."""
    leaves = tree.shape[0] // 2
    u = np.array(values, dtype=np.float64)
    node = np.ones(u.shape, dtype=np.int64)
    for _ in range(leaves.bit_length() - 1):         # log2(L) levels, root to leaves
        left = 2 * node
        go_left = (u < tree[left]) | (tree[left + 1] <= 0.0)
        u = np.where(go_left, u, u - tree[left])
        node = np.where(go_left, left, left + 1)
    return node - leaves


def sum_tree_leaves(capacity):
    """L, the number of leaves of a tree for ``capacity`` items: the least power of two
    >= capacity (the tree array has 2 L entries)."""
    capacity = int(capacity)
    if capacity < 1:
        raise ValueError(f"sum tree: capacity must be >= 1, got {capacity}")
    return 1 << (capacity - 1).bit_length()


def _check_tree(tree, where):
    if not isinstance(tree, np.ndarray) or tree.dtype != np.float64 or tree.ndim != 1 \
            or not tree.flags.c_contiguous or tree.shape[0] < 2 \
            or tree.shape[0] & (tree.shape[0] - 1):
        raise ValueError(f"{where}: tree must be a C-contiguous float64 array of length 2 L, "
                         f"L a power of two (np.zeros(2 * sum_tree_leaves(capacity)))")
    return tree.shape[0] // 2


def sum_tree_update(tree, leaf_indices, priorities):
    """In place: leaves ``leaf_indices`` (ints in [0, L)) get ``priorities`` (finite, >= 0;
    a repeated index keeps the last), and their ancestors are recomputed."""
    leaves = _check_tree(tree, "sum_tree_update")
    idx = np.asarray(leaf_indices)
    if idx.dtype.kind not in "iu" or idx.ndim != 1 or np.any(idx < 0) or np.any(idx >= leaves):
        raise ValueError(f"sum_tree_update: leaf_indices must be a 1-D integer array with "
                         f"entries in [0, {leaves}), got {leaf_indices!r}")
    p = np.asarray(priorities, dtype=np.float64)
    if p.shape != idx.shape or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"sum_tree_update: priorities must be finite numbers >= 0, one per "
                         f"index (shape {idx.shape}), got {priorities!r}")
    sum_tree_update_numba(tree, idx.astype(np.int64), p)


def sum_tree_find(tree, values):
    """The leaf whose prefix-sum interval holds each value, values in [0, tree[1])."""
    _check_tree(tree, "sum_tree_find")
    u = np.asarray(values, dtype=np.float64)
    if u.ndim != 1 or not np.all(np.isfinite(u)) or np.any(u < 0) or np.any(u >= tree[1]):
        raise ValueError(f"sum_tree_find: values must be a 1-D array of numbers in "
                         f"[0, total = {tree[1]}), got {values!r}")
    return sum_tree_find_numba(tree, u)

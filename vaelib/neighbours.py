"""Nearest codes: the distance from each code to the nearest of a set of reference codes, and how well
the k nearest share a class (k-nearest-neighbour accuracy). Introduced in chapters 1 and 2, to ask whether
an autoencoder's codes group by class and where the gaps between them are. Codes of a few dimensions are
searched with a k-d tree, others by their pairwise distances, a batch of queries at a time."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


class Nearest(NamedTuple):
    """The nearest reference code of each query code: ``distance`` and ``index`` (into the reference),
    ``[n_queries]`` each."""

    distance: torch.Tensor
    index: torch.Tensor


def _k_nearest(queries: torch.Tensor, reference: torch.Tensor, k: int, batch_size: int,
               leave_one_out: bool = False):
    """``(distances, indices) [batch, k]`` of the ``k`` nearest reference rows, a batch of queries at a
    time (a 10,000 x 60,000 distance matrix would not fit in memory). ``leave_one_out``: the queries
    are the reference, and a row is not its own neighbour."""
    if queries.dim() != 2 or reference.dim() != 2 or queries.shape[1] != reference.shape[1]:
        raise ValueError(f"expected codes [n, d] and reference codes [m, d] of the same d, got "
                         f"{tuple(queries.shape)} and {tuple(reference.shape)}; flatten images first")
    if not isinstance(k, int) or not 1 <= k <= len(reference) - leave_one_out:
        raise ValueError(f"k must be an integer between 1 and {len(reference) - leave_one_out} "
                         f"(the number of reference codes), got {k!r}")
    if queries.shape[1] <= TREE_MAX_DIM:
        yield from _k_nearest_tree(queries, reference, k, batch_size, leave_one_out)
        return
    for start in range(0, len(queries), batch_size):
        d = torch.cdist(queries[start:start + batch_size].float(), reference.float())
        if leave_one_out:
            rows = torch.arange(len(d))
            d[rows, rows + start] = math.inf
        yield d.topk(k, dim=1, largest=False)


# Up to this many dimensions a k-d tree finds the nearest codes far faster than every pairwise distance
# (10,000 2-D codes among 60,000: 0.04 s against 2 s); in 20 dimensions it is slower than the distances.
TREE_MAX_DIM = 3


class _Neighbours(NamedTuple):
    values: torch.Tensor   # [batch, k] distances, nearest first
    indices: torch.Tensor  # [batch, k] rows of the reference


def _k_nearest_tree(queries: torch.Tensor, reference: torch.Tensor, k: int, batch_size: int,
                    leave_one_out: bool):
    """:func:`_k_nearest` by a k-d tree (exact, in float64), for codes of a few dimensions."""
    from scipy.spatial import cKDTree

    tree = cKDTree(reference.detach().cpu().double().numpy())
    points = queries.detach().cpu().double().numpy()
    for start in range(0, len(points), batch_size):
        batch = points[start:start + batch_size]
        distance, index = (a.reshape(len(batch), -1) for a in tree.query(batch, k=k + leave_one_out))
        if leave_one_out:  # drop each code itself, or, where duplicates hid it, the farthest of the k + 1
            keep = index != np.arange(start, start + len(batch))[:, None]
            keep[keep.all(1), -1] = False
            distance, index = distance[keep].reshape(-1, k), index[keep].reshape(-1, k)
        yield _Neighbours(torch.from_numpy(distance).float().to(queries.device),
                          torch.from_numpy(index).long().to(queries.device))


def nearest_code(queries: torch.Tensor, reference: torch.Tensor, batch_size: int = 1000) -> Nearest:
    """The Euclidean distance from each code ``queries: [n, d]`` to its nearest code in
    ``reference: [m, d]``, and that code's index. Introduced in chapter 2, to find the gaps between an
    autoencoder's codes."""
    parts = list(_k_nearest(queries, reference, 1, batch_size))
    return Nearest(torch.cat([p.values[:, 0] for p in parts]), torch.cat([p.indices[:, 0] for p in parts]))


def knn_accuracy(codes: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor | None = None,
                 reference_labels: torch.Tensor | None = None, k: int = 5, batch_size: int = 1000) -> float:
    """The share of ``codes: [n, d]`` whose label is the commonest label among their ``k`` nearest
    ``reference`` codes (a tie goes to the smallest label): how well nearby codes share a class.
    With no reference, each code is judged by its ``k`` nearest *other* codes (leave-one-out).
    Introduced in chapter 1."""
    leave_one_out = reference is None
    if leave_one_out != (reference_labels is None):
        raise ValueError("pass reference and reference_labels together (or neither, to judge each code "
                         "by the other codes)")
    if leave_one_out:
        reference, reference_labels = codes, labels
    labels, reference_labels = torch.as_tensor(labels).cpu(), torch.as_tensor(reference_labels).cpu()
    if len(labels) != len(codes) or len(reference_labels) != len(reference):
        raise ValueError(f"need one label per code: {len(codes)} codes and {len(labels)} labels, "
                         f"{len(reference)} reference codes and {len(reference_labels)} labels")
    n_classes = int(max(labels.max(), reference_labels.max())) + 1
    hits, start = 0, 0
    for _, nearest in _k_nearest(codes, reference, k, batch_size, leave_one_out):
        votes = torch.nn.functional.one_hot(reference_labels[nearest.cpu()], n_classes).sum(1)
        hits += (votes.argmax(1) == labels[start:start + len(nearest)]).sum().item()
        start += len(nearest)
    return hits / len(codes)

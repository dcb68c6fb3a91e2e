"""Where a live figure's pad sits in the latent space: the plane of a 2-D code, or a plane through the origin
spanned by a wide code's top principal directions, and the codes the figure can show on it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

N_DIRECTIONS = 6             # principal directions a wide code's plane can be chosen from


@dataclass
class Plane:
    """Where the pad sits in the latent space: ``basis [k, latent]`` orthonormal directions, the pair of
    them the pad starts on, and the square of plane coordinates it shows."""

    basis: torch.Tensor
    axis_names: list[str]
    centre: tuple[float, float]
    half: float

    def codes(self, ab: torch.Tensor, plane: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Codes ``[n, latent]`` at plane coordinates ``ab: [n, 2]`` (no component off the plane)."""
        return ab @ self.basis[list(plane)]

    def uniform(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``[n, 2]`` plane coordinates spread uniformly over the pad."""
        return torch.tensor(self.centre) + self.half * (2 * torch.rand(n, 2, generator=gen) - 1)


def fit_plane(codes: torch.Tensor, circle: float | None) -> Plane:
    """The pad for ``codes: [n, latent]``: a 2-D code's own plane, framing the codes (and the circle of radius
    ``circle``, if any), or for a wider code the plane of its top principal directions through the origin."""
    d = codes.shape[1]
    if d == 2:
        basis, names = torch.eye(2), ["z\u2081", "z\u2082"]
        lo, hi = codes.min(0).values, codes.max(0).values
        if circle:
            lo, hi = lo.clamp(max=-circle), hi.clamp(min=circle)
        centre = ((lo + hi) / 2).tolist()
        half = 1.08 * ((hi - lo).max().item() / 2)
    else:
        # The top principal directions of the codes, as a plane through the origin: a point of the pad
        # is a code, and the middle of the pad with nothing off the plane is the origin.
        _, _, v = torch.linalg.svd(codes - codes.mean(0), full_matrices=False)
        basis = v[:min(N_DIRECTIONS, d)]
        names = [f"principal direction {i + 1}" for i in range(len(basis))]
        reach = (codes @ basis.T).abs().quantile(0.995).item()
        centre, half = [0.0, 0.0], 1.1 * max(reach, circle or 0.0, 3.0)
    return Plane(basis.float(), names, (float(centre[0]), float(centre[1])), float(half))


def shown_codes(plane: Plane, codes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Codes the figure can show: training codes, points of the pad, and prior draws (also with their
    in-plane part moved over the pad, as the pad does after "sample from the prior")."""
    gen = torch.Generator().manual_seed(seed)
    d = codes.shape[1]
    parts = [codes[torch.randperm(len(codes), generator=gen)[:n]]]
    pairs = list(itertools.combinations(range(len(plane.basis)), 2)) if d > 2 else [(0, 1)]
    for pair in pairs:
        parts.append(plane.codes(plane.uniform(n // len(pairs) + 1, gen), pair))
    prior = torch.randn(n, d, generator=gen)
    parts.append(prior)
    if d > 2:
        u = plane.basis[:2]
        parts.append(prior - (prior @ u.T) @ u + plane.codes(plane.uniform(n, gen)))
    return torch.cat(parts)

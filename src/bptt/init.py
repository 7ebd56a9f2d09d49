"""Weight initialisers. Each takes an explicit ``numpy.random.Generator``: seeds make runs repeat.

- ``uniform``: PyTorch's default for recurrent layers, U(-1/sqrt(H), 1/sqrt(H)).
- ``orthogonal``: an orthogonal matrix (all singular values 1), so at initialisation the
  linear part of  prod_j dh_j/dh_{j-1}  neither shrinks nor grows.
- ``identity``: W = I, the IRNN of Le, Jaitly & Hinton (2015), used with ReLU.
- ``scale_to_spectral_radius``: rescale W so its largest |eigenvalue| is a chosen rho;
  rho < 1 makes the linearised product vanish, rho > 1 lets it explode (Pascanu et al. 2013).
"""

from __future__ import annotations

import numpy as np


def uniform(rng: np.random.Generator, shape: tuple, bound: float, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def orthogonal(rng: np.random.Generator, shape: tuple, dtype, gain: float = 1.0) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal rows or columns (QR of a Gaussian, sign-fixed)."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))            # make the decomposition unique -> uniform (Haar) law
    if rows < cols:
        q = q.T
    return (gain * q[:rows, :cols]).astype(dtype)


def identity(shape: tuple, dtype, gain: float = 1.0) -> np.ndarray:
    return (gain * np.eye(*shape)).astype(dtype)


def spectral_radius(W: np.ndarray) -> float:
    """max |eigenvalue| of a square matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(W.astype(np.float64)))))


def scale_to_spectral_radius(W: np.ndarray, rho: float) -> np.ndarray:
    """W * rho / spectral_radius(W) (W unchanged when it is all zeros)."""
    current = spectral_radius(W)
    if current == 0:
        return W.copy()
    return (W * (rho / current)).astype(W.dtype)


# --------------------------------------------------------------------------- remedies
RECURRENT_INITS = ("uniform", "orthogonal", "identity")


def init_recurrent(W: np.ndarray, scheme: str, rng: np.random.Generator, spectral_radius_target=None) -> None:
    """Re-initialise a recurrent matrix W (G*H, H) in place, one H x H gate block at a time
    (G = 1 for the RNN, 4 for the LSTM [i, f, g, o], 3 for the GRU [r, z, n]).

    - "uniform": keep W as drawn (torch's default U(-1/sqrt(H), 1/sqrt(H)));
    - "orthogonal": each block orthogonal (Saxe et al. 2014): every singular value 1;
    - "identity": each block the identity -- with ReLU this is the IRNN (Le, Jaitly & Hinton 2015);
    - ``spectral_radius_target`` (optional, applied last): rescale each block so its largest
      |eigenvalue| is that value (<1: the linearised gradient vanishes, >1: it may explode).
    """
    if scheme not in RECURRENT_INITS:
        raise ValueError(f"recurrent_init must be one of {RECURRENT_INITS}, got {scheme!r}")
    H = W.shape[1]
    if W.ndim != 2 or W.shape[0] % H:
        raise ValueError(f"W must have shape (G*H, H), got {W.shape}")
    for start in range(0, W.shape[0], H):
        block = W[start:start + H]                              # (H, H) view into W
        if scheme == "orthogonal":
            block[...] = orthogonal(rng, (H, H), W.dtype)
        elif scheme == "identity":
            block[...] = identity((H, H), W.dtype)
        if spectral_radius_target is not None:
            block[...] = scale_to_spectral_radius(block, spectral_radius_target)

"""Weight initialisers. Each takes an explicit ``numpy.random.Generator``: seeds make runs repeat.

- ``uniform``: PyTorch's default for recurrent layers, U(-1/sqrt(H), 1/sqrt(H)).
- ``orthogonal``: an orthogonal matrix (all singular values 1), so at initialisation the
  linear part of  prod_j dh_j/dh_{j-1}  neither shrinks nor grows.
- ``identity``: W = I, the IRNN of Le, Jaitly & Hinton (2015), used with ReLU.
- ``scale_to_spectral_radius``: rescale W so its largest |eigenvalue| is a chosen rho;
  rho < 1 makes the linearised product vanish, rho > 1 lets it explode (Pascanu et al. 2013).
- ``sparse``: Pascanu, Mikolov & Bengio (2013)'s recurrent init (their code's "smart_tanh"):
  N(0, 0.01^2) with all but ``sparsity`` (15) weights of each unit set to 0, then rescaled to
  spectral radius 0.95 (``Network(recurrent_init="sparse", spectral_radius=0.95)``).
- ``normal``: the small Gaussian N(0, 0.01^2) of their input and output weights (their biases
  are 0): ``Network(input_init="normal", readout_init="normal")``.
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


PAPER_STD = 0.01          # Pascanu et al. 2013 (RNN.py, "smart_tanh"): every weight starts N(0, 0.01^2)
PAPER_SPARSITY = 15       # ... with 15 non-zero recurrent weights per unit


def normal(rng: np.random.Generator, shape: tuple, dtype, std: float = PAPER_STD) -> np.ndarray:
    """N(0, std^2) entries (std, not variance: numpy's ``scale``)."""
    return (std * rng.standard_normal(shape)).astype(dtype)


def sparse(rng: np.random.Generator, shape: tuple, dtype, sparsity: int = PAPER_SPARSITY,
           std: float = PAPER_STD) -> np.ndarray:
    """(rows, cols) with exactly ``sparsity`` non-zero N(0, std^2) entries in each row, at
    positions drawn without replacement. Row i of bptt's W holds unit i's incoming weights
    (h_t = tanh(W h_{t-1} + ...)); Pascanu's code keeps 15 per row of its W_hh = our W.T, i.e.
    per unit's outgoing weights -- the same law up to a transpose, which leaves the spectrum as is."""
    rows, cols = shape
    if not 1 <= sparsity <= cols:
        raise ValueError(f"sparsity must be in [1, {cols}] (non-zero weights per unit), got {sparsity}")
    W = np.zeros((rows, cols))
    for i in range(rows):
        keep = rng.permutation(cols)[:sparsity]            # which units feed unit i
        W[i, keep] = std * rng.standard_normal(sparsity)
    return W.astype(dtype)


# --------------------------------------------------------------------------- remedies
RECURRENT_INITS = ("uniform", "orthogonal", "identity", "sparse")
INPUT_INITS = ("uniform", "normal")        # for input_init= and readout_init= of Network


def init_recurrent(W: np.ndarray, scheme: str, rng: np.random.Generator, spectral_radius_target=None,
                   sparsity: int = PAPER_SPARSITY) -> None:
    """Re-initialise a recurrent matrix W (G*H, H) in place, one H x H gate block at a time
    (G = 1 for the RNN, 4 for the LSTM [i, f, g, o], 3 for the GRU [r, z, n]).

    - "uniform": keep W as drawn (torch's default U(-1/sqrt(H), 1/sqrt(H)));
    - "orthogonal": each block orthogonal (Saxe et al. 2014): every singular value 1;
    - "identity": each block the identity -- with ReLU this is the IRNN (Le, Jaitly & Hinton 2015);
    - "sparse": each block ``sparse(sparsity=...)``, Pascanu et al. 2013 (with spectral radius 0.95);
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
        elif scheme == "sparse":
            block[...] = sparse(rng, (H, H), W.dtype, sparsity)
        if spectral_radius_target is not None:
            block[...] = scale_to_spectral_radius(block, spectral_radius_target)

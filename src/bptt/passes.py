"""What one pass through a Network hands back: the forward pass (kept for BPTT), the
backward pass, and the combined result of ``forward_backward``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ForwardPass:
    """Everything backward needs, plus what users read: outputs and the final state."""

    outputs: np.ndarray          # (T, B, O) (or (B, O), readout "last"/"mean"): logits z for cross-entropy
                                 # (y^ = softmax(z): Network.predict_proba), predictions for mse
    final_state: object          # same format as h0
    hidden: list                 # per layer, h (T, B, D*H), D = 2 when bidirectional (before dropout)
    caches: list                 # per layer, the layer's cache
    inputs: np.ndarray
    dropout_masks: list | None = None   # per layer below the top, (T, B, D*H) scaled keep-masks, or None
    lengths: np.ndarray | None = None   # (B,) sequence lengths (packed sequences), None: all T steps
    pooled: np.ndarray | None = None    # (B, D*H) what readout "last"/"mean" read, else None
    weight_masks: dict | None = None    # DropConnect: name of W -> its (scaled) keep-mask, or None
    noise: list | None = None           # recurrent dropout / zoneout: per layer, a LayerNoise per direction


@dataclass
class BackwardPass:
    grads: dict                  # name -> dE/dparam, same keys as net.params
    dh: list                     # per layer, dE/dh_t for every t, (T, B, D*H): all paths into h_t
    dinputs: np.ndarray | None   # dE/dx (T, B, I); None for token ids
    dh0: object                  # dE/dh0 in the format of h0


@dataclass
class Result:
    loss: float
    grads: dict
    outputs: np.ndarray
    final_state: object
    dh: list = field(default_factory=list)
    dinputs: np.ndarray | None = None
    dh0: object = None

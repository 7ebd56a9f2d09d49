"""Optimisers that update ``net.params`` in place from a gradient dict.

``SGD`` is the lecture's update  theta <- theta - lr * dE/dtheta.
"""

from __future__ import annotations

import numpy as np

from . import validation as check


class SGD:
    """Plain stochastic gradient descent: p -= lr * g for every parameter."""

    def __init__(self, params: dict, lr: float = 0.1):
        self.params = params
        self.lr = check.positive_float("lr", lr)

    def step(self, grads: dict) -> None:
        for name, p in self.params.items():
            p -= self.lr * grads[name]

"""The reference side of the PyTorch parity tests: torch computing bptt's loss convention."""

import torch

F = torch.nn.functional


def torch_step(module, head, x, y, state0, mask, loss="cross_entropy"):
    """torch's loss with bptt's convention: summed over time, averaged over the batch.
    state0 is h0 or (h0, c0); returns E, outputs, final state, and the leaf tensors."""
    X = torch.tensor(x, requires_grad=x.dtype.kind == "f")
    S0 = tuple(torch.tensor(s, requires_grad=True) for s in (state0 if isinstance(state0, tuple) else (state0,)))
    out, final = module(X, S0 if len(S0) == 2 else S0[0])
    z = head(out) if head is not None else out
    T, B = y.shape[:2]
    m = torch.ones(T, B, dtype=torch.float64) if mask is None else torch.tensor(mask)
    if loss == "cross_entropy":
        per = F.cross_entropy(z.reshape(T * B, -1), torch.tensor(y).reshape(-1), reduction="none").reshape(T, B)
    else:
        per = 0.5 * ((z - torch.tensor(y)) ** 2).sum(-1)
    E = (per * m).sum() / B
    E.backward()
    final = final if isinstance(final, tuple) else (final,)
    return E, z, final, X, S0

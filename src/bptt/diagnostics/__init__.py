"""See the gradients: the lecture's decomposition of dE_t/dW, Jacobian products, spectra,
recording during training, figures and an HTML report.

    from bptt import diagnostics
    J = diagnostics.jacobian_norms(net, inputs, h0=None, layer=-1, ord=2)   # (T, T) ||dh_t/dh_k||
    C = diagnostics.step_contributions(net, inputs, targets, t, "W")        # (t+1, H, H); C.sum(0) = dE_t/dW
    S = diagnostics.input_saliency(net, ids, targets, t)                    # (T, B) ||dE_t/dx_k||
    lags = diagnostics.saliency_lags(net, ids, targets)                     # (T, B) look-back at 1% of lag 0
    lam = diagnostics.lyapunov_spectrum(net, inputs, k=4)                   # (4,) per step, QR method
    acts = diagnostics.unit_activations(net, ids)                           # per layer: h, c, gates
    loss, grads = diagnostics.rtrl.loss_and_grads(net, inputs, targets)     # == BPTT, forwards (bptt.rtrl)

Everything here needs numpy only; ``diagnostics.plots`` and ``diagnostics.report`` import
matplotlib when called.
"""

from . import rtrl
from .decomposition import contribution_norms, effective_memory, lag_profile, step_contributions
from .jacobians import jacobian_norms, products_norms, state_jacobians
from .lyapunov import lyapunov_spectrum
from .recorder import GradientRecorder, read_jsonl
from .saliency import input_saliency, saliency_lags, saliency_matrix
from .units import best_units, gate_saturation, text_features, unit_activations
from .spectra import gate_means, saturation, singular_values, spectral_radius, spectrum

__all__ = ["step_contributions", "contribution_norms", "lag_profile", "effective_memory",
           "jacobian_norms", "state_jacobians", "products_norms", "GradientRecorder", "read_jsonl",
           "singular_values", "spectral_radius", "spectrum", "saturation", "gate_means",
           "input_saliency", "saliency_matrix", "saliency_lags", "lyapunov_spectrum",
           "unit_activations", "text_features", "best_units", "gate_saturation"]

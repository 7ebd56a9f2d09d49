"""Models that enter bptt: a torch state dict (``safetensors.torch.save_file``) -> a ``Network``,
in numpy alone (torch is never imported). Names and bias merging: interop/names.py.

    from_state_dict(tensors, config)   tensors: torch name -> array; config: Network keywords,
                                       at least {"cell": ...}; sizes inferred from the shapes
    read_safetensors(path)             (tensors, metadata), one-line ValueError on a bad file
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..interop import names

# Not recoverable from weights: defaults a user may override (torch's defaults).
_DEFAULTS = {"nonlinearity": "tanh", "gru_variant": "torch", "forget_bias": 0.0, "loss": "cross_entropy",
             "readout": "all", "dropout": 0.0, "seed": 0}
MAX_BYTES = 1 << 34                     # 16 GiB: a safetensors file larger than this is refused


def _dtype_of(tensors: dict) -> str:
    kinds = {np.asarray(a).dtype for a in tensors.values()}
    return "float64" if kinds == {np.dtype(np.float64)} else "float32"


def from_state_dict(tensors: dict, config: dict, *, where: str = "state dict"):
    """A bptt ``Network`` holding ``tensors`` (torch's names: ``weight_ih_l0``, ..., ``_reverse``,
    ``head.weight``/``head.bias`` of an nn.Linear, ``embedding.weight`` of an nn.Embedding).

    ``config``: Network keyword arguments; ``cell`` is required ("rnn", "lstm" or "gru"). Sizes,
    layers, direction and biases come from the shapes; a size given in ``config`` must agree. What
    weights cannot tell (``nonlinearity`` of an RNN, ``loss``, ``readout``) defaults to torch's.
    ``dtype``: float64 when every tensor is float64, else float32, unless ``config`` says.
    ValueError naming ``where`` and the name or shape that fits no network."""
    from ..network import Network

    if not isinstance(tensors, dict) or not tensors:
        raise ValueError(f"{where}: tensors must be a non-empty dict of torch name -> array")
    if not isinstance(config, dict) or "cell" not in config:
        raise ValueError(f"{where}: config must be a dict with at least 'cell' (one of {names.TORCH_CELLS})")
    arrays = {}
    for name, a in tensors.items():
        arr = np.asarray(a)
        if arr.dtype.kind != "f":
            raise ValueError(f"{where}: {name!r} must be a float tensor, got dtype {arr.dtype}")
        arrays[name] = arr
    inferred = names.infer_config({n: a.shape for n, a in arrays.items()}, config["cell"], where)
    for key, value in config.items():
        if key in inferred and value is not None and value != inferred[key]:
            raise ValueError(f"{where}: {key}={value!r} was given but the weights say {key}={inferred[key]!r}")
    if config.get("cell") == "gru" and config.get("gru_variant", "torch") != "torch":
        raise ValueError(f"{where}: a torch GRU state dict is gru_variant 'torch', got {config['gru_variant']!r}")
    full = dict(_DEFAULTS, dtype=_dtype_of(arrays))
    full.update({k: v for k, v in config.items() if v is not None})
    full.update(inferred)
    try:
        net = Network(**full)
    except TypeError as error:
        raise ValueError(f"{where}: config does not fit bptt's Network ({error})") from None
    except ValueError as error:                       # e.g. an absurd size: still name the file
        raise ValueError(f"{where}: {error}") from None
    try:
        names.from_torch_state(net, arrays)           # shapes, dtypes, finiteness checked before any copy
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return net


def read_safetensors(path) -> tuple[dict, dict]:
    """(tensors as numpy arrays, the file's string metadata) of a safetensors file; a ValueError with
    one line naming ``path`` when it is missing, not a regular file, truncated or not safetensors."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise ImportError("reading safetensors files needs the safetensors package: pip install 'bptt[interop]'") \
            from None
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a regular file")
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise ValueError(f"{path} is {size} bytes, more than the {MAX_BYTES} bptt reads")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or int.from_bytes(head, "little") > size - 8:
        raise ValueError(f"{path} is not a safetensors file (or is truncated): its header length "
                         f"does not fit the file's {size} bytes")
    try:
        with safe_open(path, framework="np") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as error:          # safetensors raises its own SafetensorError (and others) on a bad file
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a valid safetensors file (or is truncated): {message}") from None
    return tensors, metadata


def load_safetensors(path, config: dict | None = None):
    """(Network, Vocabulary or None) from a safetensors file: the config in its metadata (written by
    ``to_safetensors``) updated with ``config``; the vocabulary from its metadata when present."""
    from ..data import Vocabulary

    tensors, metadata = read_safetensors(path)
    saved = {}
    if "bptt_config" in metadata:
        try:
            saved = json.loads(metadata["bptt_config"])
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: its bptt_config metadata is not JSON ({error})") from None
        if not isinstance(saved, dict):
            raise ValueError(f"{path}: its bptt_config metadata is not a JSON object")
        for key in ("input_size", "hidden_size", "output_size", "num_layers", "bidirectional", "bias",
                    "embedding_size", "tie_weights", "readout_bias", "recurrent_init", "spectral_radius"):
            saved.pop(key, None)                                # sizes come from the shapes
    merged = dict(saved)
    merged.update({k: v for k, v in (config or {}).items() if v is not None})
    if "cell" not in merged:
        raise ValueError(f"{path} carries no bptt config: say which cell it holds (--cell rnn|lstm|gru)")
    net = from_state_dict(tensors, merged, where=path)
    vocab = None
    if "vocabulary" in metadata:
        try:
            vocab = Vocabulary.from_json(json.loads(metadata["vocabulary"]))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: its vocabulary metadata is not valid ({error})") from None
    return net, vocab

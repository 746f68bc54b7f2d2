"""Frozen float64 fully connected ReLU networks.

A :class:`Network` is the thesis's N = (W, B) (SPEC §0): hidden layers l = 1..L with
ReLU, an affine output layer giving the logits a^{L+1}. ``weights[l]`` is stored
``(n_out, n_in)`` as in torch, so a^{l+1} = W^l h^l + b^l is ``W @ h + b``.

Parameters are float64 and read-only: a network is a value. Every method that
"changes" a network (rounding, pruning) returns a new one.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .paths import atomic_write_bytes

__all__ = ["Network", "softmax"]

FORMAT_VERSION = 1


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


class Network:
    """A fully connected ReLU network with frozen float64 parameters.

    Parameters
    ----------
    weights : sequence of 2-D arrays
        ``weights[l]`` has shape ``(n_{l+1}, n_l)``; the last one maps to the logits.
    biases : sequence of 1-D arrays
        ``biases[l]`` has shape ``(n_{l+1},)``.
    name : str, optional
        A label used in tables and file names.

    Raises
    ------
    ValueError
        Naming the offending layer, for values that are not real numbers (complex,
        boolean, strings, objects), non-finite values, wrong ranks or shapes that do not
        chain.
    """

    def __init__(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], *, name: str | None = None):
        weights = list(weights)
        biases = list(biases)
        if len(weights) == 0:
            raise ValueError("a Network needs at least one layer (the output layer); got no weights")
        if len(weights) != len(biases):
            raise ValueError(
                f"got {len(weights)} weight matrices but {len(biases)} bias vectors; "
                "every layer needs exactly one of each"
            )
        ws, bs = [], []
        for l, (w, b) in enumerate(zip(weights, biases)):
            try:
                w, b = np.asarray(w), np.asarray(b)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"layer {l}: parameters are not numeric arrays ({exc})") from None
            for what, a in (("weight", w), ("bias", b)):
                if a.dtype.kind not in "iuf":  # complex, bool, strings, objects: no implicit cast
                    kind = {"c": "complex", "b": "boolean"}.get(a.dtype.kind, "non-numeric")
                    raise ValueError(f"layer {l}: {what} has {kind} dtype {a.dtype}; a Network's parameters are "
                                     "real numbers (int or float arrays)")
            w, b = w.astype(np.float64), b.astype(np.float64)
            if w.ndim != 2:
                raise ValueError(f"layer {l}: weight must be a 2-D (n_out, n_in) matrix, got shape {w.shape}")
            if b.ndim != 1 or b.shape[0] != w.shape[0]:
                raise ValueError(
                    f"layer {l}: bias shape {b.shape} does not match weight shape {w.shape}; "
                    f"expected ({w.shape[0]},)"
                )
            if l > 0 and w.shape[1] != ws[-1].shape[0]:
                raise ValueError(
                    f"layer {l}: weight takes {w.shape[1]} inputs but layer {l - 1} has "
                    f"{ws[-1].shape[0]} outputs"
                )
            if w.size == 0:
                raise ValueError(f"layer {l}: empty weight matrix {w.shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError(f"layer {l}: weight contains NaN or infinite values")
            if not np.all(np.isfinite(b)):
                raise ValueError(f"layer {l}: bias contains NaN or infinite values")
            ws.append(_frozen(w))
            bs.append(_frozen(b))
        self._weights = tuple(ws)
        self._biases = tuple(bs)
        self.name = name
        self._digest: str | None = None

    # ------------------------------------------------------------------ shape
    @property
    def weights(self) -> tuple[np.ndarray, ...]:
        return self._weights

    @property
    def biases(self) -> tuple[np.ndarray, ...]:
        return self._biases

    @property
    def n_inputs(self) -> int:
        return self._weights[0].shape[1]

    @property
    def n_outputs(self) -> int:
        return self._weights[-1].shape[0]

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Neurons per hidden layer, (n_1, ..., n_L)."""
        return tuple(w.shape[0] for w in self._weights[:-1])

    @property
    def depth(self) -> int:
        """L, the number of hidden (ReLU) layers."""
        return len(self._weights) - 1

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(n_0, n_1, ..., n_L, K): inputs, hidden layers, logits."""
        return (self.n_inputs,) + tuple(w.shape[0] for w in self._weights)

    @property
    def n_weights(self) -> int:
        return int(sum(w.size for w in self._weights))

    @property
    def arch(self) -> str:
        """Thesis-style architecture label, e.g. ``200x5`` or ``15-10``."""
        h = self.hidden_sizes
        if not h:
            return "linear"
        if len(set(h)) == 1:
            return f"{h[0]}x{len(h)}"
        return "-".join(str(n) for n in h)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Network{label} {'-'.join(map(str, self.layer_sizes))} digest={self.digest()[:10]}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())

    # --------------------------------------------------------------- forward
    def _check_input(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        x2 = x[None, :] if single else x
        if x2.ndim != 2 or x2.shape[1] != self.n_inputs:
            raise ValueError(
                f"input has shape {x.shape}; this network takes {self.n_inputs} inputs "
                f"(a vector of {self.n_inputs} or a batch of shape (n, {self.n_inputs}))"
            )
        return x2, single

    def preactivations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activations a^1, ..., a^{L+1} (the last entry are the logits), float64.

        Entry ``l`` belongs to the affine layer ``weights[l]``; for a single input vector
        each entry is 1-D, for a batch it is ``(n, n_{l+1})``.
        """
        h, single = self._check_input(x)
        out = []
        for l, (w, b) in enumerate(zip(self._weights, self._biases)):
            a = h @ w.T + b
            out.append(a[0] if single else a)
            if l < self.depth:
                h = np.maximum(a, 0.0)
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits a^{L+1}(x) in float64."""
        return self.preactivations(x)[-1]

    __call__ = forward

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.forward(x))

    def predict(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Predicted class (argmax of the logits)."""
        x = np.asarray(x)
        if x.ndim == 1:
            return np.int64(np.argmax(self.forward(x)))
        return np.concatenate(
            [np.argmax(self.forward(x[i : i + batch_size]), axis=1) for i in range(0, len(x), batch_size)]
        ) if len(x) else np.zeros(0, dtype=np.int64)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        y = np.asarray(y)
        if len(y) == 0:
            raise ValueError("accuracy of an empty set is undefined; pass at least one sample")
        return float(np.mean(self.predict(x) == y))

    # --------------------------------------------------------------- identity
    def digest(self) -> str:
        """SHA-256 of the architecture and the exact float64 parameters."""
        if self._digest is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.layer_sizes).encode())
            for w, b in zip(self._weights, self._biases):
                h.update(np.ascontiguousarray(w).tobytes())
                h.update(np.ascontiguousarray(b).tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def with_parameters(self, weights=None, biases=None, *, name: str | None = None) -> Network:
        """A new network with some parameters replaced (same shapes enforced)."""
        new = Network(
            self._weights if weights is None else weights,
            self._biases if biases is None else biases,
            name=self.name if name is None else name,
        )
        if new.layer_sizes != self.layer_sizes:
            raise ValueError(f"replacement parameters change the architecture {self.layer_sizes} → {new.layer_sizes}")
        return new

    # ------------------------------------------------------------------ torch
    @classmethod
    def from_torch(cls, model, *, name: str | None = None) -> Network:
        """Read a ``torch.nn.Sequential`` of Linear / ReLU (Flatten allowed first)."""
        import torch.nn as tnn

        modules = list(model.children()) if isinstance(model, tnn.Sequential) else [model]
        weights, biases = [], []
        expect_linear = True
        for i, m in enumerate(modules):
            if isinstance(m, tnn.Flatten) and i == 0:
                continue
            if isinstance(m, tnn.Linear):
                if not expect_linear:
                    raise ValueError(f"module {i} ({m}): two Linear layers without a ReLU between them")
                weights.append(m.weight.detach().cpu().double().numpy())
                b = m.bias
                biases.append(
                    b.detach().cpu().double().numpy() if b is not None else np.zeros(m.out_features)
                )
                expect_linear = False
            elif isinstance(m, tnn.ReLU):
                if expect_linear:
                    raise ValueError(f"module {i}: ReLU must follow a Linear layer")
                expect_linear = True
            else:
                raise ValueError(
                    f"module {i} is {type(m).__name__}; only Linear and ReLU layers "
                    "(fully connected ReLU networks) are supported"
                )
        if expect_linear:
            raise ValueError("the model must end with a Linear layer producing the logits")
        return cls(weights, biases, name=name)

    def to_torch(self, dtype=None):
        """A ``torch.nn.Sequential`` computing the same function (float64 by default)."""
        import torch
        import torch.nn as tnn

        dtype = dtype or torch.float64
        layers = []
        for l, (w, b) in enumerate(zip(self._weights, self._biases)):
            lin = tnn.Linear(w.shape[1], w.shape[0]).to(dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(np.array(w), dtype=dtype))
                lin.bias.copy_(torch.as_tensor(np.array(b), dtype=dtype))
            layers.append(lin)
            if l < self.depth:
                layers.append(tnn.ReLU())
        return tnn.Sequential(*layers)

    # ------------------------------------------------------------------- ONNX
    @classmethod
    def from_onnx(cls, path, *, name: str | None = None) -> Network:
        """Read a fully connected ReLU network from an ONNX file (see :mod:`nnmiplib.onnx_io`).

        Raises ``ValueError`` naming the operator and node for graphs that are not a
        single-input single-output fully connected ReLU network, ``FileNotFoundError`` if
        ``path`` does not exist.
        """
        from .onnx_io import read_graph

        weights, biases, _ = read_graph(path)
        return cls(weights, biases, name=name or Path(path).stem)

    def to_onnx(self, path, *, input_shape=None, dtype: str = "float32", opset: int = 17) -> Path:
        """Write this network as an ONNX graph of Gemm/Relu nodes (``dtype`` float32 or float64).

        The model is serialised first and written atomically (:func:`nnmiplib.paths.atomic_write_bytes`):
        if the write fails, an existing file at ``path`` is left as it was.
        """
        from .onnx_io import write_graph

        return write_graph(self._weights, self._biases, path, input_shape, writer=atomic_write_bytes, name=self.name,
                           dtype=dtype, opset=opset)

    # -------------------------------------------------------------- save/load
    def save(self, path) -> Path:
        """Save to ``.npz`` (parameters + digest), written atomically.

        Through :func:`nnmiplib.paths.atomic_write_bytes`: if the write fails (a full disk, a
        read-only folder) an ``OSError`` names the file and an existing file is left as it was.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays = {f"w{l}": w for l, w in enumerate(self._weights)}
        arrays.update({f"b{l}": b for l, b in enumerate(self._biases)})
        meta = {"format": FORMAT_VERSION, "n_layers": len(self._weights), "digest": self.digest(), "name": self.name}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path) -> Network:
        """Load a network written by :meth:`save`; the stored digest is checked."""
        from .paths import read_npz

        def parse(meta, z):
            n = int(meta["n_layers"])
            return meta, [z[f"w{l}"] for l in range(n)], [z[f"b{l}"] for l in range(n)]

        meta, ws, bs = read_npz(path, "network", "save the network again", parse)
        net = cls(ws, bs, name=meta.get("name"))
        if net.digest() != meta.get("digest"):
            raise ValueError(f"{path}: parameters do not match the stored digest (file corrupted); delete it")
        return net

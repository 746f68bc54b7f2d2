r"""Tighter intermediate bounds: one batched branch and bound over every unstable neuron of a layer.

The relaxation of a deep network is only as tight as the bounds of its hidden neurons
(the Big-M constants, the chords of the ReLU relaxation). α-CROWN bounds each neuron by
one linear relaxation; the MILP that the Bounder (thesis Algorithm 3) solves per neuron
is exact but costs a MIP per neuron and side. :func:`tighten` sits between: for hidden
layer ``m``, the upper and the lower bound of every unstable neuron is a *target*, and all
targets are searched at once by branch and bound over the phases of the earlier layers'
neurons —

* the root of every target is bounded in one batch (α optimised per target: α-CROWN with
  the earlier layers' bounds as tightened so far);
* each round takes the worst open node of every target still open (fewest expansions
  first when there are more than ``batch``), branches it as :func:`nnmiplib.bab.solve`
  does (BaBSR score weighed by pseudocosts, one record for the layer's targets; filtered
  look-ahead) and bounds the children together — nodes of
  different targets side by side in one matrix computation
  (:attr:`nnmiplib.bab.relax.NodeBatch.rows`);
* a target closes once its bound proves the neuron's sign (the neuron becomes stable,
  the strongest gain for every later bound; its other side then closes too: a stable
  neuron's relaxation is exact whatever that bound), or when its worst node has no free
  neuron left; the time left passes on to the next layer.

A target's bound is the largest bound of its open and closed nodes — each certified as
every bound of :mod:`nnmiplib.bab.relax` (float64, widened outward) — so the result is
sound whenever the search stops. Layers are tightened in order: a deeper layer's targets
start from the bounds the earlier layers just got. This is the "refine the intermediate
bounds first" stage of the field's verifiers for deep MLPs, done with this project's own
engine instead of one MILP per neuron.
"""

from __future__ import annotations

import time

import numpy as np

from ..machine import quiet_blas
from ..network import Network
from . import relax as R
from .branch import Pseudocosts, children, choose
from .cuts import relaxation_cuts

__all__ = ["FIRST_CHECK", "MEMORY", "PASSES", "split_time", "tighten", "tighten_layer", "truncate"]

#: bytes the open nodes of one layer's search may take (α, β, decisions, objective row); a
#: layer whose queue reaches it stops there with the bounds proven so far
MEMORY = 2**31

#: hull cuts of :func:`tighten_layer` (``cuts > 0``): new cuts per target root and layer in each
#: round, and the cuts kept per target neuron of the layer. Measured on PV's 200x5 net, digit 1,
#: α-CROWN bounds, 10 s per layer, a fifth of it for the cuts: 172 neurons of 454 made stable
#: (1 and 2 per target neuron), 169 (2 and 3), 143 without cuts; with 3 and ~5 per target neuron
#: 157, and 155 with every violated cut kept (thousands: the searches' nodes cost 15× more).
CUTS_PER_TARGET, CUTS_PER_NEURON = 1, 2

#: seconds of tightening before :func:`tighten` first asks its ``stop``
FIRST_CHECK = 1.0

#: :func:`tighten`'s passes over the layers: the shares of its time at which each ends. One pass
#: by default. Measured on PV's margin form, 100x10, 120 s, half of it for the tightening, with
#: (0.25, 1.0): digit 4 robust in 16 s instead of 62 s, digit 0 in 65 s as before, but the
#: undecided digits 1 and 8 end with dual bounds 8.7 and 3.3 instead of 5.8 and 3.0 (the first
#: pass's trees are searched again).
PASSES = (1.0,)


def truncate(net: Network, layer: int, rows: np.ndarray) -> Network:
    """The network whose outputs are the pre-activations ``rows`` of affine layer ``layer``."""
    W, B = list(net.weights[:layer]), list(net.biases[:layer])
    W.append(net.weights[layer][rows])
    B.append(net.biases[layer][rows])
    return Network(W, B)


def split_time(items, seconds: float):
    """Yield ``(item, share)``: ``seconds`` from now shared by ``items`` in order, each an equal
    share of what the earlier ones left (so an item that ends early leaves its time to the
    next); ends once nothing is left."""
    until = time.perf_counter() + seconds
    for i, item in enumerate(items):
        share = (until - time.perf_counter()) / (len(items) - i)
        if share <= 0:
            return
        yield item, share


class _Pool:
    """The open nodes of a layer's search with their bound ``ub``, target ``tid`` and ``leaf`` flag,
    in storage with spare rows: a round writes its children into its parents' slots and appends
    the rest, and the slots left over are filled from the end — copies of the size of a round,
    where concatenating the kept nodes with the children copies the whole pool every round (a
    third of a layer's time on 256x4 MNIST once the pool holds tens of thousands of nodes).
    ``memory``: bytes of nodes to reserve storage for up front (:meth:`_grow`)."""

    def __init__(self, nodes: R.NodeBatch, ub, tid, leaf, memory: int = 0):
        from dataclasses import fields

        self.n = nodes.n
        # every field of NodeBatch, with how many tensors it holds (a list, one tensor, or None)
        self._shape = []
        for f in fields(R.NodeBatch):
            v = getattr(nodes, f.name)
            self._shape.append((f.name, None if v is None else (len(v) if isinstance(v, list) else -1)))
        self._data = self._tensors(nodes) + [ub, tid, leaf]
        per = sum(t[:1].numel() * t.element_size() for t in self._data)
        self._grow(max(self.n, int(memory) // max(per, 1)))

    def _grow(self, cap: int) -> None:
        """Storage for ``cap`` nodes. Its spare rows are left unwritten: the system maps their pages
        only when a round first writes them, so storage sized for the whole memory budget up front
        costs nothing until it is used, and spares the copies of growing it (with every new page
        written twice) — a fifth of a layer's time on PV's 200x5 net once the pool held 200 k nodes."""
        import torch

        if cap <= self._data[0].shape[0]:
            return
        out = []
        for t in self._data:
            new = torch.empty((cap, *t.shape[1:]), dtype=t.dtype)
            new[:self.n] = t[:self.n]
            out.append(new)
        self._data = out

    def _tensors(self, nodes) -> list:
        out = []
        for f, shape in self._shape:
            v = getattr(nodes, f)
            out += [] if shape is None else (list(v) if shape >= 0 else [v])
        return out

    @property
    def nodes(self) -> R.NodeBatch:
        """The open nodes (views of the storage, valid until the next :meth:`replace`)."""
        it = iter([t[:self.n] for t in self._data])
        kw = {f: None if shape is None else ([next(it) for _ in range(shape)] if shape >= 0 else next(it))
              for f, shape in self._shape}
        return R.NodeBatch(**kw)

    @property
    def ub(self):
        return self._data[-3][:self.n]

    @property
    def tid(self):
        return self._data[-2][:self.n]

    @property
    def leaf(self):
        return self._data[-1][:self.n]

    def replace(self, slots, kids: R.NodeBatch, ub, tid) -> None:
        """Remove the nodes at ``slots`` (distinct) and add ``kids`` with bounds ``ub`` and targets ``tid``."""
        import torch

        new = self._tensors(kids) + [ub, tid, torch.zeros(kids.n, dtype=torch.bool)]
        k, m = int(slots.numel()), kids.n
        put = min(k, m)
        for t, v in zip(self._data, new):
            t[slots[:put]] = v[:put]
        if m > k:  # the rest at the end
            need = self.n + m - k
            if need > self._data[0].shape[0]:
                self._grow(max(need, 2 * self._data[0].shape[0]))
            for t, v in zip(self._data, new):
                t[self.n:need] = v[put:]
            self.n = need
        elif k > m:  # fill the slots left over with the last nodes
            holes = slots[put:]
            end = self.n - holes.numel()
            gone = torch.zeros(self.n - end, dtype=torch.bool)
            gone[holes[holes >= end] - end] = True
            src = torch.arange(end, self.n)[~gone]
            dst = holes[holes < end]
            for t in self._data:
                t[dst] = t[src]
            self.n = end


class _Rows:
    """The objective of a target node: its one row (``worst`` is always row 0)."""

    @staticmethod
    def worst(ub):
        import torch

        return torch.zeros(ub.shape[0], dtype=torch.int64)

    @staticmethod
    def value(ub):
        return ub[:, 0]


def tighten_layer(net: Network, lo, hi, lower, upper, layer: int, *, time_limit: float, batch: int = 256,
                  k_candidates: int = 1, pseudocosts: bool = True, root_iterations: int = 20, iterations: int = 6,
                  stop=None, cuts: float = 0.0) -> dict:
    """Tighten the bounds of the unstable neurons of affine layer ``layer`` (module doc).

    Parameters
    ----------
    net : Network.
    lo, hi : the input box.
    lower, upper : pre-activation bounds of (at least) affine layers ``0 .. layer``: the
        earlier ones are the constants of every node's relaxation, this layer's say which
        neurons are unstable (``lower < 0 < upper``) and are never loosened.
    layer : affine layer ``1 .. net.depth − 1`` (layer 0 is exact by interval arithmetic).
    time_limit : seconds for the whole layer (it also stops when its open nodes would take
        more than :data:`MEMORY` bytes).
    batch : targets expanded per round.
    k_candidates, root_iterations, iterations : as in :func:`nnmiplib.bab.solve` (width 1: on PV's
        200x5 digit 1, 40 s from α-CROWN, 107 neurons made stable and a root bound of 7.33
        on a margin row, against 100 and 7.53 with width 2).
    pseudocosts : as in :func:`nnmiplib.bab.solve`, one record for all the layer's targets (40 s
        from α-CROWN, without / with: PV 200x5 digit 1, neurons made stable per layer
        50 / 52, 47 / 48, 47 / 52, 41 / 43; PV 100x10 digit 8, mean width of the last hidden
        layer 11.30 / 11.12).
    stop : optional ``stop(lower_m, upper_m) -> bool``, asked after every round with the
        layer's bounds proven so far (whole arrays, sound as they stand): True ends the
        search there (``"stopped"`` in the result).
    cuts : share of ``time_limit`` spent at most on hull cuts of the earlier layers, separated at
        the targets' roots (:func:`nnmiplib.bab.cuts.relaxation_cuts`); every node then
        carries them. 0: none.

    Returns
    -------
    ``{"lower", "upper"}`` the layer's new bounds (⊆ the given ones), and ``"neurons"``,
    ``"stable"`` (neurons whose sign the search proved), ``"nodes"``, ``"rounds"``,
    ``"seconds"``, ``"stopped"``.
    """
    import torch

    t0 = time.perf_counter()
    if not 1 <= layer < net.depth:
        raise ValueError(f"layer must lie in 1..{net.depth - 1} (the hidden layers after the first), got {layer}")
    l_in = np.asarray(lower[layer], dtype=np.float64)
    u_in = np.asarray(upper[layer], dtype=np.float64)
    idx = np.flatnonzero((l_in < 0) & (u_in > 0))
    out = {"lower": l_in.copy(), "upper": u_in.copy(), "neurons": int(idx.size), "stable": 0, "nodes": 0,
           "rounds": 0, "seconds": 0.0, "stopped": False}
    if idx.size == 0:
        return out
    deadline = t0 + float(time_limit)
    K = idx.size
    sub = truncate(net, layer, idx)
    lay = R.Layers.build(sub, lower[:layer], upper[:layer], lo, hi, np.eye(K)[:1], np.zeros(1))
    eye = torch.eye(K, dtype=torch.float64)
    rows = torch.cat([eye, -eye])[:, None, :]  # targets 0..K−1: max a_j; K..2K−1: max −a_j
    pool = R.NodeBatch.root(lay, 2 * K)
    pool.rows = rows
    ub, pool = R.optimise(lay, pool, iterations=root_iterations, deadline=deadline)
    if cuts > 0:
        found, pool, ub, out["cuts"] = relaxation_cuts(lay, pool, ub, level=torch.zeros(2 * K), per_point=CUTS_PER_TARGET,
                                                       max_cuts=CUTS_PER_NEURON * K,
                                                       deadline=t0 + cuts * float(time_limit))
        lay = lay.with_cuts(found)
    # the open nodes; leaf: no free neuron left, its bound is final. The stable neurons'
    # multipliers pay at the roots only (relax.without_gamma)
    store = _Pool(R.without_gamma(pool), ub[:, 0].clone(), torch.arange(2 * K), torch.zeros(2 * K, dtype=torch.bool),
                  memory=MEMORY)
    closed = torch.full((2 * K,), -np.inf, dtype=torch.float64)  # per target: largest bound of a dropped node
    expanded = torch.zeros(2 * K, dtype=torch.int64)
    obj = _Rows()
    nodes = 2 * K
    pseudo = Pseudocosts(lay.sizes) if pseudocosts else None  # shared by the layer's targets

    def target_bounds():
        best = torch.full((2 * K,), -np.inf, dtype=torch.float64)
        best = best.scatter_reduce(0, store.tid, store.ub, reduce="amax")
        return torch.maximum(best, closed)

    def proven(bnd):
        bnd = bnd.numpy()
        new_l, new_u = l_in.copy(), u_in.copy()
        new_u[idx] = np.minimum(u_in[idx], bnd[:K])
        new_l[idx] = np.maximum(l_in[idx], -bnd[K:])
        return new_l, new_u

    per_node = 17 * sum(lay.sizes) + 8 * K + 8 * sum(lay.cut_counts)
    while time.perf_counter() < deadline and store.n * per_node < MEMORY:
        ub, tid, leaf = store.ub, store.tid, store.leaf
        bnd = target_bounds()
        if stop is not None and out["rounds"] and stop(*proven(bnd)):
            out["stopped"] = True
            break
        # a target's worst node: the first node whose bound is its target's bound
        worst = torch.full((2 * K,), -1, dtype=torch.int64)
        is_top = ub >= bnd[tid]
        worst.scatter_(0, tid[is_top], torch.nonzero(is_top).flatten())
        # a neuron whose sign one side proved is stable: its other side is not searched on
        signed = (bnd[:K] <= 0) | (bnd[K:] <= 0)
        open_t = (bnd > 0) & (worst >= 0) & ~leaf[worst.clamp(min=0)] & ~torch.cat([signed, signed])
        if not bool(open_t.any()):
            break
        cand = torch.nonzero(open_t).flatten()
        cand = cand[torch.argsort(expanded[cand], stable=True)][:batch]
        pick = worst[cand]
        parents = store.nodes.take(pick)
        layer_of, index_of, has_free, score = choose(lay, parents, ub[pick][:, None], obj, k_candidates, pseudo)
        leaf[pick[~has_free]] = True
        go = has_free
        if not bool(go.any()):
            continue
        pick, parents, layer_of, index_of, score = pick[go], parents.take(go), layer_of[go], index_of[go], score[go]
        kids = children(parents, layer_of, index_of, torch.ones(int(go.sum()), dtype=torch.bool))
        kub, kids = R.optimise(lay, kids, iterations=iterations, best=ub[pick].repeat_interleave(2)[:, None],
                               stop_below=torch.zeros(kids.n), deadline=deadline)
        kub = kub[:, 0]
        if pseudo is not None:
            pseudo.record(layer_of, index_of, score, ub[pick], kub, 0.0)
        ktid = tid[pick].repeat_interleave(2)
        expanded[tid[pick]] += 1
        nodes += kids.n
        # children proven ≤ 0 leave the pool (their bound is kept per target); parents are replaced
        done = kub <= 0
        if bool(done.any()):
            closed.scatter_reduce_(0, ktid[done], kub[done], reduce="amax")
        store.replace(pick, kids.take(~done), kub[~done], ktid[~done])
        out["rounds"] += 1
    out["lower"], out["upper"] = proven(target_bounds())
    out["stable"] = int(((out["upper"][idx] <= 0) | (out["lower"][idx] >= 0)).sum())
    out["nodes"], out["seconds"] = nodes, time.perf_counter() - t0
    return out


def tighten(net: Network, lo, hi, lower, upper, *, time_limit: float, layers=None, threads: int | None = None,
            stop=None, first_check: float | None = None, passes=None, **kw) -> tuple[list, list, list]:
    """Tighten the bounds of hidden layers ``layers`` (default every affine layer ``1 .. L−1``)
    in order by :func:`tighten_layer`, the time shared evenly among the layers still to do
    (what a layer leaves passes on).

    ``threads``: torch threads for the search (None: as they are set). Here torch's own threads
    pay, unlike in :func:`nnmiplib.bab.solve`'s search, whose batches are split among threads
    of one torch thread each instead (``workers``): 256x4 MNIST, ε = 0.03, image 0, 24 s, two
    runs each, neurons made stable in layers 1–3 with one thread 41 / 60 / 49 (both runs);
    two torch threads 45 / 61 / 54, 45 / 60 / 51; the rounds' batches split between two
    threads 37 / 60 / 50, 41 / 60 / 51 (the first layer's truncated net is one matrix deep: a
    round is mostly interpreter work, which two threads do not share).

    ``passes``: the shares of ``time_limit`` at which each pass over the layers ends (default
    :data:`PASSES`). A later pass starts every layer again from the bounds of the earlier one,
    the earlier layers already tightened: a short first pass gives every layer some tightening
    early, which is what a decision on a deep network needs (see ``stop``).

    ``stop``: optional ``stop(lower, upper) -> bool`` on the whole lists as proven so far (sound
    as they stand), e.g. "the query's rows are already decided on these bounds". It is asked
    after each pass, and after each layer and after every round of a layer's search once
    ``first_check`` seconds (default :data:`FIRST_CHECK`) have passed — then only again after 9
    times as long as its last answer took, and at least a quarter of the time spent so far, so
    that its cost stays ≤ 10 %. True ends the tightening there (``"stopped"`` in the last
    layer's stats).

    Returns ``(lower, upper, stats)``: new lists of float64 arrays (the given ones for the
    other layers, the logits included) and one stats dict per layer and pass (``"pass"``).
    """
    import torch

    t0 = time.perf_counter()
    lower = [np.array(x, dtype=np.float64) for x in lower]
    upper = [np.array(x, dtype=np.float64) for x in upper]
    todo = list(range(1, net.depth)) if layers is None else [int(m) for m in layers]
    ends = [float(e) for e in (PASSES if passes is None else passes)]
    if not ends or any(not 0 < e <= 1 for e in ends) or ends != sorted(ends):
        raise ValueError(f"passes must be increasing shares of the time limit in (0, 1], got {passes!r}")
    if len(todo) < 2:  # one layer: a second pass would only search its first pass's tree again
        ends = ends[-1:]
    prev = torch.get_num_threads()
    torch.set_num_threads(int(threads or prev))
    stats = []
    next_check = [float(FIRST_CHECK if first_check is None else first_check)]

    def asked(m, force=False):
        def ask(l_m, u_m):
            now = time.perf_counter() - t0
            if now < next_check[0] and not force:
                return False
            answer = bool(stop([*lower[:m], l_m, *lower[m + 1:]], [*upper[:m], u_m, *upper[m + 1:]]))
            took = time.perf_counter() - t0 - now
            next_check[0] = now + max(9 * took, 0.25 * now)  # the checks: ≤ 10 % of the time
            return answer
        return ask if stop is not None else None

    try:
        with quiet_blas():  # numpy's idle BLAS threads off the cores torch uses
            for k, end in enumerate(ends):
                for i, m in enumerate(todo):
                    left = end * float(time_limit) - (time.perf_counter() - t0)
                    if left <= 0:
                        break
                    r = tighten_layer(net, lo, hi, lower, upper, m, time_limit=left / (len(todo) - i), stop=asked(m),
                                      **kw)
                    lower[m], upper[m] = r.pop("lower"), r.pop("upper")
                    stats.append({"layer": m, "pass": k, **r})
                    if r["stopped"]:
                        return lower, upper, stats
                    last = i + 1 == len(todo)
                    if stop is not None and (not last or k + 1 < len(ends)) and asked(m, force=last)(lower[m], upper[m]):
                        stats[-1]["stopped"] = True
                        return lower, upper, stats
    finally:
        torch.set_num_threads(prev)
    return lower, upper, stats

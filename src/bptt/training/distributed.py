"""Data-parallel training over MPI: N processes ("ranks"), one model, one global batch.

Each rank holds a full copy of the parameters and takes a contiguous share of the B
parallel batch streams (``shard_bounds``). The loss convention of bptt (summed over time,
averaged over the batch, see ``losses.py``) decides how the shares are combined:

    E      = (1/B) sum_{b=0..B-1} E^(b)                       one process, global batch B
           = sum_r (B_r / B) E_r,     E_r = (1/B_r) sum_{b in shard r} E^(b)
    dE/dθ  = sum_r (B_r / B) dE_r/dθ                          <- ONE Allreduce(SUM) per update

so every rank scales its local gradient by its share B_r / B, packs all of them into a
single flat contiguous buffer (``GradientBuffer``: one Allreduce per optimiser update --
one per step, or one per chunk with chunked truncation -- never one per parameter, so the
latency term is paid once), sums it across ranks in place, and unpacks it. Every rank then
holds the same global gradient, clips it the same way and applies the same optimiser
step: the parameters stay identical, and equal those of one process with batch B up to
float rounding (the sum is taken in a different order). Two scalars ride along in the
buffer's last slots: the loss (so the logged loss is the global one for free) and a stop
vote (so a time limit stops every rank after the same step).

Safety nets (an MPI job that hangs burns a cluster allocation silently):

- ``check_identical``: at every checkpoint each rank hashes its parameters (SHA-256 over
  the raw bytes, in name order) and the hashes are all-gathered; any difference raises
  ``DivergedError`` naming the ranks that disagree.
- ``agree``: at start every rank compares its settings and its text's SHA-256 with rank 0's
  (one broadcast, one Allgather) and every rank stops with the same line naming the first rank
  and setting that differ.
- ``abort_on_error``: an exception on one rank prints one line naming the rank and calls
  ``MPI_Abort``, which ends every rank -- instead of the others waiting forever in their
  next Allreduce. ``install_excepthook`` does the same for uncaught exceptions.
- A rank killed outright (SIGKILL, out of memory) cannot run any handler; MPICH's
  ``mpiexec`` (hydra) notices the dead process and tears the whole job down with
  "BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES". (Tested in
  tests/test_distributed.py.)

Rank 0 alone writes checkpoints, metrics and the progress bar (``is_root``). The glue to
``bptt.training.train.Trainer`` (sharded data, reduced updates, checkpoints) is ``DataParallel`` in
``data_parallel.py``.

mpi4py is imported only inside ``Distributed.from_environment``: the core stays numpy-only,
and a single process never needs MPI (``Distributed.single()`` has the same interface and
does nothing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time

import numpy as np

from .. import validation as check

# Variables a launcher sets in every process it starts. With the world size: MPICH/Intel MPI
# hydra and Slurm's PMI-2 (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH2
# (MV2_COMM_WORLD_SIZE), Slurm's srun (SLURM_NTASKS, only together with a PMI variable);
# without it, only marking a launch: PMI_RANK, PMIX_RANK (PMIx-based launchers).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK")
LAUNCH_VARIABLES = SIZE_VARIABLES + RANK_VARIABLES


_MISSING = object()


class SettingsDiffer(ValueError):
    """MPI ranks were started with different settings or texts."""


class DivergedError(RuntimeError):
    """Ranks hold different parameters: data-parallel training has gone wrong."""


def mpi_launched(environ=None) -> bool:
    """True when an MPI launcher (mpiexec, mpirun, srun) started this process as one of
    several. A launch of ONE process (``srun -n 1 bptt train ...``, common on clusters) is not
    an MPI run: it must work without mpi4py. Unknown size but a rank variable: launched."""
    environ = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.strip().isdigit():
            return int(value) > 1
    if "SLURM_NTASKS" in environ and environ["SLURM_NTASKS"].strip().isdigit() and \
            any(name in environ for name in RANK_VARIABLES):
        return int(environ["SLURM_NTASKS"]) > 1
    return any(name in environ for name in RANK_VARIABLES)


def shard_bounds(batch: int, rank: int, size: int) -> tuple[int, int]:
    """Streams [start, stop) of the global batch that ``rank`` of ``size`` takes.

    Contiguous and as even as possible: the first ``batch % size`` ranks take one extra.
    Every rank needs at least one stream, so ``batch >= size``.
    """
    batch = check.positive_int("batch", batch)
    size = check.positive_int("size", size)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < size:
        raise ValueError(f"rank must be an integer in [0, {size}), got {rank!r}")
    if batch < size:
        raise ValueError(f"batch must be >= the number of MPI ranks ({size}), got {batch} "
                         f"(every rank needs at least one stream)")
    base, extra = divmod(batch, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def parameter_hash(arrays: dict) -> str:
    """SHA-256 over names, shapes, dtypes and raw bytes, in the dict's order."""
    digest = hashlib.sha256()
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class GradientBuffer:
    """One flat contiguous array holding every gradient (plus ``extra`` scalar slots).

    ``views[name]`` is a reshaped view into ``flat``: packing is one copy per parameter
    into the buffer, the reduction is ONE collective over ``flat``, unpacking one copy back.
    """

    def __init__(self, params: dict, extra: int = 1):
        if not params:
            raise ValueError("params must hold at least one array, got an empty dict")
        dtypes = {np.asarray(p).dtype for p in params.values()}
        if len(dtypes) != 1:
            raise TypeError(f"params must share one dtype to share one buffer, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self.names = list(params)
        total = int(sum(np.asarray(p).size for p in params.values()))
        self.flat = np.zeros(total + extra, dtype=self.dtype)             # (P + extra,)
        self.views, offset = {}, 0
        for name, p in params.items():
            self.views[name] = self.flat[offset:offset + p.size].reshape(p.shape)
            offset += p.size
        self.extra = self.flat[total:]                                    # (extra,)

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes)

    def pack(self, grads: dict, scale: float = 1.0) -> None:
        """flat <- scale * grads (one multiply-copy per parameter, no temporaries)."""
        for name in self.names:
            np.multiply(grads[name], scale, out=self.views[name])

    def unpack(self, grads: dict) -> None:
        """grads <- flat, in place: the arrays the caller holds get the reduced values."""
        for name in self.names:
            np.copyto(grads[name], self.views[name])


class Distributed:
    """Who am I (``rank``) among how many (``size``), and the collectives training needs.

    ``Distributed.single()`` is the one-process stand-in: same methods, no MPI.
    """

    def __init__(self, comm=None, rank: int = 0, size: int = 1):
        self.comm = comm
        self.rank = int(rank)
        self.size = int(size)
        self._buffer = None
        self.stop_votes = 0               # ranks that voted to stop in the last reduction

    # ---------------------------------------------------------------- creation
    @classmethod
    def single(cls) -> "Distributed":
        return cls(None, 0, 1)

    @classmethod
    def from_environment(cls, force: bool = False, environ=None) -> "Distributed":
        """MPI's COMM_WORLD when launched by mpiexec (or ``force``), else ``single()``.

        Raises ImportError with the install command when MPI is wanted but mpi4py is missing.
        """
        if not (force or mpi_launched(environ)):
            return cls.single()
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise ImportError("MPI training needs mpi4py and an MPI library: pip install 'bptt[mpi]' "
                              f"(or build mpi4py against your cluster's MPI); import failed: {error}") from None
        comm = MPI.COMM_WORLD
        return cls(comm, comm.Get_rank(), comm.Get_size())

    # ------------------------------------------------------------------ facts
    @property
    def active(self) -> bool:
        """More than one rank: collectives actually communicate."""
        return self.comm is not None and self.size > 1

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size}"

    def shard(self, batch: int) -> slice:
        """This rank's streams of a global batch of ``batch`` streams, as a slice of axis 1."""
        start, stop = shard_bounds(batch, self.rank, self.size)
        return slice(start, stop)

    def shard_batch(self, inputs, targets, mask=None):
        """This rank's columns of a time-major batch: inputs (T, B, ...), targets (T, B, ...), mask (T, B)."""
        inputs = np.asarray(inputs)
        if inputs.ndim < 2:
            raise ValueError(f"inputs must be time-major (T, B, ...), got shape {inputs.shape}")
        part = self.shard(inputs.shape[1])
        if self.size == 1:
            return inputs, targets, mask
        return (inputs[:, part], np.asarray(targets)[:, part], None if mask is None else np.asarray(mask)[:, part])

    # ------------------------------------------------------------ collectives
    def allreduce_gradients(self, grads: dict, local_batch: int, global_batch: int,
                            loss: float | None = None, vote_stop: bool = False) -> float | None:
        """grads <- sum_r (B_r / B) grads_r on every rank, in place, with ONE Allreduce.

        Two scalars ride in the same buffer: ``loss`` (this rank's E_r; the global
        E = sum_r (B_r / B) E_r is returned, None when no loss was given) and a stop vote
        (``vote_stop``; afterwards ``self.stop_votes`` counts the ranks that voted, the same
        number on every rank -- so a time limit stops every rank after the same step).
        """
        local_batch = check.positive_int("local_batch", local_batch)
        global_batch = check.positive_int("global_batch", global_batch)
        if not self.active:
            self.stop_votes = int(bool(vote_stop))
            return loss
        buffer = self._buffer
        if buffer is None or buffer.names != list(grads) or any(
                buffer.views[n].shape != grads[n].shape for n in buffer.names):
            buffer = self._buffer = GradientBuffer(grads, extra=2)
        share = local_batch / global_batch                                # B_r / B
        buffer.pack(grads, share)
        buffer.extra[0] = 0.0 if loss is None else loss * share
        buffer.extra[1] = 1.0 if vote_stop else 0.0
        self.comm.Allreduce(self._in_place(), buffer.flat)               # the one collective per step
        buffer.unpack(grads)
        self.stop_votes = int(round(float(buffer.extra[1])))
        return None if loss is None else float(buffer.extra[0])

    def _in_place(self):
        from mpi4py import MPI
        return MPI.IN_PLACE

    def _allgather_digests(self, digest: bytes) -> np.ndarray:
        """Every rank's 32-byte digest, (size, 32) uint8 -- a buffer collective, no pickle."""
        mine = np.frombuffer(digest, dtype=np.uint8)                      # (32,)
        everyone = np.empty((self.size, mine.size), dtype=np.uint8)       # (N, 32)
        self.comm.Allgather(mine, everyone)
        return everyone

    def check_identical(self, arrays: dict, what: str = "parameters", step: int | None = None) -> str:
        """All-gather a SHA-256 of ``arrays`` and raise DivergedError unless every rank agrees.

        Every rank receives the same table of hashes, so every rank raises (or not) together.
        Returns the common hash (hex).
        """
        mine = parameter_hash(arrays)
        if not self.active:
            return mine
        hashes = [row.tobytes().hex() for row in self._allgather_digests(bytes.fromhex(mine))]
        if len(set(hashes)) != 1:
            groups = {}
            for rank, value in enumerate(hashes):
                groups.setdefault(value, []).append(rank)
            detail = "; ".join(f"ranks {ranks} hash {value[:12]}" for value, ranks in groups.items())
            where = "" if step is None else f" at step {step}"
            raise DivergedError(f"MPI ranks hold different {what}{where} ({detail}): the data-parallel "
                                f"replicas diverged; refusing to go on")
        return mine

    def check_same_everywhere(self, text: str, what: str) -> None:
        """Raise ValueError unless ``text`` is the same on every rank (compared by SHA-256)."""
        if not self.active:
            return
        digests = self._allgather_digests(hashlib.sha256(text.encode()).digest())
        differ = [rank for rank in range(self.size) if not np.array_equal(digests[rank], digests[0])]
        if differ:
            raise ValueError(f"{what} differs between MPI ranks: ranks {differ} disagree with rank 0")

    def agree(self, settings: dict, what: str = "settings") -> None:
        """Stop unless every rank runs with rank 0's ``settings`` (a dict of JSON values: flags, the
        text's SHA-256, the step resumed from). Rank 0's canonical JSON is broadcast (its length, then
        its bytes: buffer collectives, no pickle) and one Allgather collects from every rank the index
        of its first differing key, so every rank raises the same ``SettingsDiffer`` naming the lowest
        such rank and the setting -- instead of deadlocking (different --steps) or failing deep in MPI
        (different --hidden) or training on different texts without a word."""
        if not self.active:
            return
        mine = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
        length = np.array([len(mine)], dtype=np.int64)
        self.comm.Bcast(length, root=0)
        root_bytes = np.frombuffer(mine, dtype=np.uint8).copy() if self.is_root else np.empty(int(length[0]), np.uint8)
        self.comm.Bcast(root_bytes, root=0)
        reference = json.loads(root_bytes.tobytes().decode("utf-8"))
        mine_again = json.loads(mine.decode("utf-8"))          # compared as rank 0 sees them (JSON values)
        keys = sorted(reference)
        first = next((i for i, key in enumerate(keys) if mine_again.get(key, _MISSING) != reference[key]), -1)
        if first < 0 and set(mine_again) - set(reference):
            first = len(keys)                                  # a setting rank 0 does not have
        codes = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([first], dtype=np.int64), codes)
        differ = [rank for rank in range(self.size) if codes[rank] >= 0]
        if not differ:
            return
        rank, index = differ[0], int(codes[differ[0]])
        if index >= len(keys):
            raise SettingsDiffer(f"MPI rank {rank} has {what} that rank 0 lacks; every rank must run the same command")
        key = keys[index]
        shown = key if " " in key else f"--{key.replace('_', '-')}"      # a flag, or a described value
        others = f" (and ranks {differ[1:]})" if len(differ) > 1 else ""
        raise SettingsDiffer(f"MPI rank {rank}{others} was started with a different {shown} than rank 0 "
                             f"({json.dumps(reference[key])}): every rank must run the same command on the same text")

    def gather_columns(self, array: np.ndarray, axis: int = 1):
        """Root gets the ranks' shards concatenated along ``axis`` (e.g. a carried state
        (L, B_r, H) -> (L, B, H)); the other ranks get None. One Gatherv, no pickle."""
        if not self.active:
            return array
        moved = np.ascontiguousarray(np.moveaxis(np.asarray(array), axis, 0))   # (B_r, ...)
        rest = moved.shape[1:]
        counts = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([moved.shape[0]], dtype=np.int64), counts)
        if not self.is_root:
            self.comm.Gatherv(moved, None, root=0)
            return None
        row = int(np.prod(rest, dtype=np.int64))
        gathered = np.empty((int(counts.sum()),) + rest, dtype=moved.dtype)     # (B, ...)
        self.comm.Gatherv(moved, (gathered, counts * row), root=0)
        return np.moveaxis(gathered, 0, axis)

    def broadcast_float(self, value) -> float:
        """Rank 0's ``value`` on every rank (one float64 Bcast; other ranks may pass None)."""
        if not self.active:
            return float(value)
        buffer = np.array([np.nan if value is None else value], dtype=np.float64)
        self.comm.Bcast(buffer, root=0)
        return float(buffer[0])

    def barrier(self) -> None:
        if self.active:
            self.comm.Barrier()

    # ---------------------------------------------------------------- failure
    def abort(self, message: str, code: int = 1) -> None:
        """Print ``message`` (one line, naming this rank) and end EVERY rank with MPI_Abort."""
        prefix = f"[{self.describe()}] " if self.active else ""
        if self.active and not self.is_root:
            # An error every rank hits (a bad flag, a missing file) should print once: give
            # rank 0 a moment to print and abort the job first. Alone, this rank goes on.
            time.sleep(0.5)
        print(f"{prefix}{message}", file=sys.stderr, flush=True)
        if self.active:
            # mpiexec forwards each rank's stderr through its proxy; MPI_Abort can tear the proxy
            # down before it has read the line (seen on a loaded machine): give it a moment.
            time.sleep(0.3)
            self.comm.Abort(code)
        raise SystemExit(code)

    @contextlib.contextmanager
    def abort_on_error(self, command: str = "train", code: int = 2):
        """Turn any exception on one rank into a one-line message and MPI_Abort of the whole job.

        Without this, a rank that raises would go on to MPI_Finalize at exit while the others
        wait for it in their next Allreduce: a silent hang. With one rank, errors pass through.
        Set BPTT_DEBUG=1 to print the traceback first.
        """
        if not self.active:
            yield
            return
        try:
            yield
        except SystemExit as done:
            if done.code not in (0, None):
                self.abort(f"bptt {command}: exited with code {done.code}; aborting all {self.size} ranks",
                           int(done.code) if isinstance(done.code, int) else 1)
            raise
        except KeyboardInterrupt:
            self.abort(f"bptt {command}: interrupted; aborting all {self.size} ranks", 130)
        except BaseException as error:                                   # noqa: BLE001 -- we abort on anything
            if os.environ.get("BPTT_DEBUG"):
                import traceback
                traceback.print_exc()
            message = str(error) or type(error).__name__
            self.abort(f"bptt {command}: error: {message} (aborting all {self.size} MPI ranks)", code)

    def install_excepthook(self) -> None:
        """Uncaught exceptions on any rank end the whole job (MPI_Abort) instead of hanging it."""
        if not self.active:
            return
        previous = sys.excepthook

        def hook(kind, value, tb):
            previous(kind, value, tb)
            print(f"[{self.describe()}] uncaught {kind.__name__}; aborting all {self.size} MPI ranks",
                  file=sys.stderr, flush=True)
            self.comm.Abort(1)

        sys.excepthook = hook



# The Trainer integration lives in its own module to keep both small; importable from here.
from .data_parallel import DataParallel  # noqa: E402,F401  (after Distributed: no import cycle)

"""Data-parallel training with ``bptt.training.train.Trainer``: the glue between the Trainer and
``bptt.training.distributed.Distributed`` (read that module's docstring first for the equations).

    dist = Distributed.from_environment()          # MPI under mpiexec, else one process
    parallel = DataParallel(dist)
    trainer = Trainer(net, optimizer, truncation=parallel.wrap_truncation(Chunked(25)), ...)
    parallel.load_trainer_state(trainer, checkpoint.trainer_state())    # when resuming
    trainer.fit(parallel.shard_data(data, trainer), steps=..., on_step=...)
    view = parallel.prepare_checkpoint(trainer)    # every rank: hash check + gather
    if dist.is_root: save_checkpoint(path, net, trainer=view)

The Trainer is not changed: sharding wraps the data, the reduction wraps the truncation mode.
"""

from __future__ import annotations

import time

import numpy as np


class DataParallel:
    """Plugs a ``Distributed`` into ``bptt.training.train.Trainer`` without changing the Trainer:

        parallel = DataParallel(dist)
        trainer = Trainer(net, optimizer, truncation=parallel.wrap_truncation(Chunked(25)), ...)
        trainer.fit(parallel.shard_data(data, trainer), steps=...)

    - ``shard_data``: every rank builds the SAME global batch (same data, same seeds) and keeps
      its columns ``dist.shard(B)``; the carried hidden state is then per shard (L, B_r, H);
    - ``wrap_truncation``: every update of the truncation mode (one per chunk for Chunked(k))
      is summed over the ranks -- gradients and loss, one Allreduce -- BEFORE the Trainer sees
      it, so the finiteness check, clipping (on the global norm), the optimiser, the callbacks
      and the logged loss all see the global values, identically on every rank.
      (The Trainer's ``grad_hook`` would do for the gradients, but it cannot see the loss.)
    - ``full_carried_state`` / ``local_carried_state``: the carried state gathered to rank 0 for
      a checkpoint (so a checkpoint looks like a one-process one), and cut back on resume;
    - ``check_replicas``: the identical-parameters check (parameters and optimiser slots).
    """

    def __init__(self, dist):
        self.dist = dist
        self.global_batch = None          # B of the last global batch shard_data cut
        self.global_tokens = None         # outputs counted in its loss (T*B, or the mask's sum)
        self.deadline = None              # time.perf_counter() after which ranks vote to stop
        self.stop_requested = False       # some rank voted to stop: every rank stops after this step
        self.stop_signal = None           # callable, True once this rank was asked to stop (bptt.training.interrupt)

    def set_time_limit(self, seconds: float | None) -> None:
        """Stop after ``seconds`` -- decided collectively. Each rank's own clock would stop the
        ranks after different steps, leaving some waiting forever in an Allreduce; instead every
        update carries a stop vote in the gradient buffer, and all ranks stop after the first
        step in which any rank's time ran out. Give the Trainer no ``time_limit`` of its own."""
        self.deadline = None if seconds is None else time.perf_counter() + float(seconds)
        self.stop_requested = False

    def wants_to_stop(self) -> bool:
        """This rank's stop vote: its time is up, or it received a signal."""
        late = self.deadline is not None and time.perf_counter() >= self.deadline
        return late or (self.stop_signal is not None and bool(self.stop_signal()))

    # -------------------------------------------------------------- the data
    def cut(self, batch):
        """This rank's columns of a ``bptt.training.train.Batch`` (or (inputs, targets[, mask]))."""
        from .train import Batch, as_batch

        batch = as_batch(batch)
        inputs = np.asarray(batch.inputs)
        if inputs.ndim < 2:
            raise ValueError(f"inputs must be time-major (T, B, ...), got shape {inputs.shape}")
        self.global_batch = inputs.shape[1]
        self.global_tokens = float(inputs.shape[0] * self.global_batch if batch.mask is None
                                   else np.sum(batch.mask, dtype=np.float64))
        part = self.dist.shard(self.global_batch)
        if self.dist.size == 1:
            return batch
        mask = None if batch.mask is None else np.asarray(batch.mask)[:, part]
        return Batch(inputs[:, part], np.asarray(batch.targets)[:, part], mask, batch.reset)

    def shard_data(self, data, trainer):
        """Any data the Trainer accepts, cut to this rank's streams batch by batch.

        With one rank, step-addressed data (``batch(step)``, a function of the step, fixed
        arrays) stays step-addressed. With several, the result is an iterable -- so that an
        agreed stop (a time limit, a signal) can end it -- which still asks step-addressed data
        for batch ``trainer.step``, so a resumed run sees the same batches as an unbroken one."""
        from .train import _Source

        source = _Source(data)
        step_addressed = hasattr(data, "batch") or callable(data) or isinstance(data, tuple)
        if step_addressed and not self.dist.active:
            return _ShardedBatches(self, source)

        def generate():
            count = 0                                       # iterables ignore the step; count for them
            while not self.stop_requested:
                batch = source.get(trainer.step if step_addressed else count)
                if batch is None:
                    return
                yield self.cut(batch)
                count += 1
        return generate()

    def attach(self, net) -> None:
        """Dropout masks for the GLOBAL batch: ``net.dropout_rng`` is wrapped so that each rank
        draws the mask of all B streams (as one process would, advancing the generator the same
        way on every rank) and keeps its own columns -- dropout then changes nothing in the
        equivalence with one process. Relies on Network drawing masks as
        ``dropout_rng.random((T, B, width))``; other shapes are drawn as asked."""
        rng = getattr(net, "dropout_rng", None)
        if self.dist.active and rng is not None and not isinstance(rng, _GlobalBatchRandom):
            net.dropout_rng = _GlobalBatchRandom(rng, self)

    def evaluate_on_root(self, evaluate):
        """``evaluate(net) -> float`` run by rank 0 alone and broadcast: every rank gets the same
        number (a learning-rate schedule that watches the validation loss then decides the same
        everywhere, even on nodes whose BLAS rounds differently), and the others do not repeat
        the work. Collective: every rank must call the returned function at the same points."""
        if not self.dist.active:
            return evaluate

        def on_root(net):
            return self.dist.broadcast_float(evaluate(net) if self.dist.is_root else None)
        return on_root

    # ------------------------------------------------------- the reduction
    def wrap_truncation(self, mode=None):
        """``mode`` (FullBPTT when None) with every update reduced over the ranks first."""
        if mode is None:
            from .truncation import FullBPTT
            mode = FullBPTT()
        return _ReducedUpdates(mode, self)

    # --------------------------------------------------- carried state
    def full_carried_state(self, state):
        """Root: the shards' carried states joined to the global batch, (L, B, H) or a tuple of
        them; other ranks: None. Collective: every rank must call it."""
        if state is None or not self.dist.active:
            return state
        if isinstance(state, tuple):
            parts = tuple(self.dist.gather_columns(s, axis=1) for s in state)
            return parts if self.dist.is_root else None
        return self.dist.gather_columns(state, axis=1)

    def local_carried_state(self, state):
        """This rank's columns of a global carried state read from a checkpoint."""
        if state is None or self.dist.size == 1:
            return state
        first = state[0] if isinstance(state, tuple) else state
        part = self.dist.shard(first.shape[1])
        if isinstance(state, tuple):
            return tuple(np.ascontiguousarray(s[:, part]) for s in state)
        return np.ascontiguousarray(state[:, part])

    def prepare_checkpoint(self, trainer):
        """Collective, before rank 0 writes a checkpoint: the identical-parameters check
        (raises DivergedError on every rank), then the carried state gathered to rank 0.
        Returns, on rank 0, a stand-in for ``trainer`` to give ``save_checkpoint(trainer=...)``
        whose carried state covers the whole batch; on the other ranks None."""
        self.check_replicas(trainer.net, trainer.optimizer, step=trainer.step)
        carried = self.full_carried_state(trainer.state)
        if not self.dist.is_root:
            return None
        return _GlobalTrainerView(trainer, carried) if self.dist.active else trainer

    def load_trainer_state(self, trainer, state: dict) -> None:
        """``trainer.load_state_dict(state)`` with the checkpoint's (global) carried state cut to
        this rank's streams -- otherwise the Trainer would see a batch-size mismatch and silently
        restart the carried state from zeros."""
        trainer.load_state_dict(state)
        trainer.state = self.local_carried_state(trainer.state)

    # ------------------------------------------------------------ safety
    def check_replicas(self, net, optimizer=None, step: int | None = None) -> str:
        """Raise DivergedError unless every rank holds the same parameters (and optimiser slots)."""
        arrays = dict(net.params)
        slots = getattr(optimizer, "slots", None) or {}
        for slot, named in slots.items():
            for name, array in named.items():
                arrays[f"optimizer.{slot}.{name}"] = array
        return self.dist.check_identical(arrays, "parameters and optimiser state", step=step)


class _GlobalBatchRandom:
    """A numpy Generator stand-in whose ``random((T, B_r, W))`` is this rank's columns of
    ``random((T, B, W))``; ``bit_generator`` is the real one (checkpoints save/restore it)."""

    def __init__(self, rng, parallel: DataParallel):
        self.rng, self.parallel = rng, parallel

    @property
    def bit_generator(self):
        return self.rng.bit_generator

    def __getattr__(self, name):
        return getattr(self.rng, name)

    def random(self, size=None, *args, **kwargs):
        batch = self.parallel.global_batch
        if batch is None or size is None or len(size) != 3:
            return self.rng.random(size, *args, **kwargs)
        part = self.parallel.dist.shard(batch)
        if size[1] != part.stop - part.start:
            return self.rng.random(size, *args, **kwargs)
        return self.rng.random((size[0], batch, size[2]), *args, **kwargs)[:, part]


class _GlobalTrainerView:
    """What ``save_checkpoint`` reads from a trainer, with the whole batch's carried state."""

    def __init__(self, trainer, carried):
        self.trainer, self.carried = trainer, carried

    def __getattr__(self, name):
        return getattr(self.trainer, name)

    def state_dict(self) -> dict:
        state = self.trainer.state_dict()
        state["carried_state"] = self.carried
        return state


class _ShardedBatches:
    def __init__(self, parallel: DataParallel, source):
        self.parallel, self.source = parallel, source

    def batch(self, step: int):
        return self.parallel.cut(self.source.get(step))


class _ReducedUpdates:
    """A truncation mode whose updates are summed over the MPI ranks before the Trainer sees them."""

    def __init__(self, mode, parallel: DataParallel):
        self.mode, self.parallel = mode, parallel

    def __getattr__(self, name):                    # describe(), k, ... of the wrapped mode
        return getattr(self.mode, name)

    @property
    def global_batch(self):                         # the Trainer reports the whole job's batch ...
        return self.parallel.global_batch

    @property
    def global_tokens(self):                        # ... and its token count (tokens/s, loss per token)
        return self.parallel.global_tokens

    def run(self, net, inputs, targets, mask, state, update):
        dist = self.parallel.dist
        local_batch = inputs.shape[1]
        global_batch = self.parallel.global_batch
        if dist.active and global_batch is None:
            raise ValueError("data-parallel training needs its batches cut by DataParallel.shard_data")
        global_batch = global_batch or local_batch
        total = 0.0

        def reduced(piece) -> None:
            nonlocal total
            piece.loss = dist.allreduce_gradients(piece.grads, local_batch, global_batch, loss=piece.loss,
                                                  vote_stop=self.parallel.wants_to_stop())
            self.parallel.stop_requested |= dist.stop_votes > 0
            total += piece.loss
            update(piece)

        _, final_state = self.mode.run(net, inputs, targets, mask, state, reduced)
        return total, final_state

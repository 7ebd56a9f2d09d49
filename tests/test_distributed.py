"""Data-parallel training over MPI (bptt.training.distributed).

Two kinds of test:
- in-process (no MPI): batch sharding, the flat gradient buffer, the hash, and the identity
  the whole scheme rests on -- sum_r (B_r/B) dE_r/dθ == dE/dθ of the global batch;
- ``mpiexec -n 2`` subprocesses (skipped when mpi4py or mpiexec is missing), every one with a
  timeout so a hang fails the test instead of freezing CI. This file is also the worker
  script those subprocesses run: ``python tests/test_distributed.py WORKER ARGS...``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptt import Network, clip_by_global_norm
from bptt.training.distributed import Distributed, GradientBuffer, mpi_launched, parameter_hash, shard_bounds
from bptt.training.optim import SGD

HERE = Path(__file__).resolve()


# ---------------------------------------------------------------- helpers
def find_mpiexec():
    """mpiexec next to this Python (the mpich wheel in a venv) first, then on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def need_mpi():
    pytest.importorskip("mpi4py")
    launcher = find_mpiexec()
    if launcher is None:
        pytest.skip("mpiexec not found (pip install mpich)")
    return launcher


def clean_env():
    """The test process may itself run under a launcher; children must not inherit its PMI_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MV2_", "HYDRA_"))}
    env["OMP_NUM_THREADS"] = "1"               # 2 ranks on 2 cores: no BLAS oversubscription
    env["PYTHONHASHSEED"] = "0"
    return env


def start(command):
    """mpiexec in its own session, so a hung job can be killed with every rank it started."""
    return subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(), start_new_session=True)


def kill_job(job):
    if job.poll() is None:
        try:
            os.killpg(job.pid, 9)                  # mpiexec, its proxy and every rank
        except ProcessLookupError:
            pass
        job.communicate()


def mpirun(nprocs, *args, timeout=60):
    command = [need_mpi(), "-n", str(nprocs), *args]
    job = start(command)
    try:
        out, err = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_job(job)
        pytest.fail(f"MPI job hung for {timeout}s (no abort): {command}")
    return subprocess.CompletedProcess(command, job.returncode, out, err)


def worker(nprocs, name, *args, timeout=60):
    return mpirun(nprocs, sys.executable, HERE, name, *args, timeout=timeout)


def problem(seed=3, T=6, B=5, vocab=7):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, vocab, size=(T, B))
    targets = rng.integers(0, vocab, size=(T, B))
    mask = (rng.random((T, B)) < 0.8).astype(np.float64)
    return inputs, targets, mask


def make_net(seed=0):
    return Network(7, 6, 7, num_layers=2, seed=seed, dtype="float64")


# ------------------------------------------------------- in-process tests
def test_shard_bounds_cover_the_batch_once_and_evenly():
    for batch in (1, 2, 5, 8, 13):
        for size in range(1, batch + 1):
            parts = [shard_bounds(batch, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == batch
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))          # contiguous, no overlap
            widths = [stop - start for start, stop in parts]
            assert min(widths) >= 1 and max(widths) - min(widths) <= 1


@pytest.mark.parametrize("args, fragment", [((2, 0, 3), "batch must be >= the number of MPI ranks (3), got 2"),
                                            ((4, 4, 4), "rank must be an integer in [0, 4), got 4"),
                                            ((4, -1, 2), "rank must be an integer in [0, 2), got -1"),
                                            ((0, 0, 1), "batch must be >= 1, got 0"),
                                            ((4, 0, 0), "size must be >= 1, got 0")])
def test_shard_bounds_refuses_bad_arguments(args, fragment):
    with pytest.raises(ValueError) as error:
        shard_bounds(*args)
    assert fragment in str(error.value)


@pytest.mark.parametrize("size", [2, 3, 5])
def test_shares_of_shard_gradients_sum_to_the_global_gradient(size):
    """The identity data parallelism rests on: dE/dθ = sum_r (B_r/B) dE_r/dθ (also the loss), masks included."""
    net = make_net()
    inputs, targets, mask = problem(B=5)
    loss, grads = net.loss_and_grads(inputs, targets, mask)
    total = {name: np.zeros_like(g) for name, g in grads.items()}
    total_loss = 0.0
    for rank in range(size):
        start, stop = shard_bounds(5, rank, size)
        part_loss, part = net.loss_and_grads(inputs[:, start:stop], targets[:, start:stop], mask[:, start:stop])
        share = (stop - start) / 5
        total_loss += share * part_loss
        for name in total:
            total[name] += share * part[name]
    assert abs(total_loss - loss) <= 1e-13 * abs(loss)
    for name, g in grads.items():
        np.testing.assert_allclose(total[name], g, rtol=1e-12, atol=1e-15, err_msg=name)


def test_gradient_buffer_is_one_flat_array_and_roundtrips():
    net = make_net()
    rng = np.random.default_rng(0)
    grads = {name: rng.standard_normal(p.shape) for name, p in net.params.items()}
    buffer = GradientBuffer(grads, extra=1)
    assert buffer.flat.flags.c_contiguous and buffer.flat.size == net.num_parameters + 1
    for name, view in buffer.views.items():
        assert np.shares_memory(view, buffer.flat), name                   # views, not copies
    buffer.pack(grads, scale=0.25)
    np.testing.assert_array_equal(buffer.views["layers.1.W"], 0.25 * grads["layers.1.W"])
    buffer.flat *= 4.0
    out = {name: np.zeros_like(g) for name, g in grads.items()}
    buffer.unpack(out)
    for name in grads:
        np.testing.assert_array_equal(out[name], grads[name])


def test_gradient_buffer_refuses_mixed_dtypes_and_empty():
    with pytest.raises(TypeError, match="one dtype"):
        GradientBuffer({"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float64)})
    with pytest.raises(ValueError, match="empty"):
        GradientBuffer({})


def test_parameter_hash_sees_one_ulp_and_names():
    net = make_net()
    before = parameter_hash(net.params)
    assert parameter_hash(make_net().params) == before                     # same seed, same hash
    w = net.params["layers.0.W"]
    w[0, 0] = np.nextafter(w[0, 0], np.inf)
    assert parameter_hash(net.params) != before
    renamed = {"x" + k: v for k, v in make_net().params.items()}
    assert parameter_hash(renamed) != before


def test_launch_detection_reads_the_launchers_variables():
    assert not mpi_launched({})
    assert not mpi_launched({"HOME": "/root", "SLURM_PROCID": "0", "SLURM_NTASKS": "4"})   # a batch script
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        assert mpi_launched({name: "2"})
        assert not mpi_launched({name: "1"})               # one process (srun -n 1): no mpi4py needed
    assert mpi_launched({"PMIX_RANK": "0"}) and mpi_launched({"PMI_RANK": "3"})
    assert not mpi_launched({"PMIX_RANK": "0", "SLURM_NTASKS": "1"})
    assert mpi_launched({"PMIX_RANK": "0", "SLURM_NTASKS": "8"})


def test_single_process_stand_in_does_nothing():
    one = Distributed.from_environment(environ={})
    assert (one.rank, one.size, one.active, one.is_root) == (0, 1, False, True)
    grads = make_net().zero_grads()
    grads["V"][...] = 3.0
    assert one.allreduce_gradients(grads, 4, 4, loss=1.5) == 1.5
    assert np.all(grads["V"] == 3.0)
    assert one.check_identical(make_net().params) == parameter_hash(make_net().params)
    inputs, targets, mask = problem()
    assert one.shard_batch(inputs, targets, mask)[0] is inputs


def test_one_process_never_imports_mpi4py():
    """The core stays numpy-only: importing the modules and a one-process `bptt train` set-up
    must not load mpi4py (a subprocess: this test process may have imported it already)."""
    code = ("import sys; import bptt, bptt.training.distributed, bptt.training.data_parallel, bptt.cli.train; "
            "from bptt.training.distributed import Distributed; d = Distributed.from_environment(); "
            "print(d.size, d.active, 'mpi4py' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=clean_env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "False", "False"]


# ------------------------------------------------------------- MPI workers
def train_steps(steps, dist, out=None, diverge_rank=None, fail_rank=None, kill_rank=None):
    """SGD with global-norm clipping on a fixed sequence of global batches; ``dist`` shards them."""
    net = make_net()
    optimizer = SGD(net.params, lr=0.5)
    B = 5
    losses = []
    for step in range(steps):
        inputs, targets, mask = problem(seed=100 + step, B=B)              # the same global batch on every rank
        x, y, m = dist.shard_batch(inputs, targets, mask)
        if step == 1 and dist.rank == kill_rank:
            os.kill(os.getpid(), 9)                                        # SIGKILL: no handler can run
        if step == 1 and dist.rank == fail_rank:
            raise RuntimeError("injected failure on this rank")
        loss, grads = net.loss_and_grads(x, y, m)
        loss = dist.allreduce_gradients(grads, x.shape[1], B, loss=loss)
        clip_by_global_norm(grads, 1.0)                                    # after the reduction: the global norm
        optimizer.step(grads)
        losses.append(loss)
    if dist.rank == diverge_rank:
        net.params["V"][0, 0] += 1e-9                                      # a replica gone astray
    digest = dist.check_identical(net.params, step=steps)
    if dist.is_root and out is not None:
        np.savez(out, **net.params)
        Path(str(out) + ".json").write_text(json.dumps({"losses": losses, "hash": digest, "size": dist.size}))


def fit_trainer(steps, dist, out, mode="chunked", resume=None, save=None):
    """The real engine: Trainer + Adam + global-norm clipping + truncated BPTT, with the hidden
    state carried across batches (reset=False), on per-rank shards of the same global batches.
    ``save``: write a checkpoint (rank 0) after training; ``resume``: start from one."""
    from bptt.io.checkpoint import load_checkpoint, save_checkpoint
    from bptt.training.clip import make_clipper
    from bptt.training.distributed import DataParallel
    from bptt.training.optim import Adam
    from bptt.training.train import Batch, Trainer
    from bptt.training.truncation import Chunked, FullBPTT

    net = make_net() if resume is None else load_checkpoint(resume).network()
    parallel = DataParallel(dist)
    truncation = Chunked(2) if mode == "chunked" else FullBPTT()
    trainer = Trainer(net, Adam(net.params, lr=0.05), clip=make_clipper("global-norm", 0.5),
                      truncation=parallel.wrap_truncation(truncation))
    if resume is not None:
        parallel.load_trainer_state(trainer, load_checkpoint(resume).trainer_state())

    def data(step):                                   # a function of the step: the same global batch on every rank
        inputs, targets, mask = problem(seed=200 + step, B=5)
        return Batch(inputs, targets, mask, reset=(step == 0))

    summaries = trainer.fit(parallel.shard_data(data, trainer), steps=steps)
    view = parallel.prepare_checkpoint(trainer)                          # collective: hash check + gather
    if dist.is_root:
        if save is not None:
            save_checkpoint(save, net, trainer=view)
        carried = view.state_dict()["carried_state"]
        np.savez(out, carried_state=carried, **net.params)
        Path(str(out) + ".json").write_text(json.dumps({"losses": [s.loss for s in summaries],
                                                       "norms": [s.grad_norm for s in summaries],
                                                       "size": dist.size}))


def timed_trainer(dist, out):
    """Rank 1's clock runs out at once, rank 0's never: both must stop after the same step."""
    from bptt.training.distributed import DataParallel
    from bptt.training.optim import SGD as PlainSGD
    from bptt.training.train import Trainer

    net = make_net()
    parallel = DataParallel(dist)
    trainer = Trainer(net, PlainSGD(net.params, lr=0.1), truncation=parallel.wrap_truncation())
    parallel.set_time_limit(0.0 if dist.rank == 1 else 1e9)
    data = lambda step: problem(seed=step, B=4)                           # noqa: E731
    trainer.fit(parallel.shard_data(data, trainer), steps=None)
    steps = np.empty(dist.size, dtype=np.int64)
    dist.comm.Allgather(np.array([trainer.step], dtype=np.int64), steps)
    parallel.check_replicas(net, step=trainer.step)
    if dist.is_root:
        Path(out).write_text(json.dumps({"steps": steps.tolist()}))


def main(argv):
    name, *args = argv
    dist = Distributed.from_environment(force=True)
    if name == "uncaught":                                                # outside abort_on_error
        dist.install_excepthook()
        train_steps(4, dist, fail_rank=1)
    with dist.abort_on_error("test"):
        if name == "trainer":
            fit_trainer(int(args[0]), dist, args[1], mode=args[2])
        elif name == "trainer-save":
            fit_trainer(int(args[0]), dist, args[1], save=args[2])
        elif name == "trainer-resume":
            fit_trainer(int(args[0]), dist, args[1], resume=args[2])
        elif name == "train":
            train_steps(int(args[0]), dist, out=args[1])
        elif name == "timed":
            timed_trainer(dist, args[0])
        elif name == "uncaught":
            pass
        elif name == "diverge":
            train_steps(2, dist, diverge_rank=1)
        elif name == "fail":
            train_steps(4, dist, fail_rank=1)
        elif name == "kill":
            train_steps(4, dist, kill_rank=1)
        else:
            raise ValueError(f"unknown worker {name!r}")
    return 0


# --------------------------------------------------------------- MPI tests
@pytest.mark.mpi
def test_two_ranks_equal_one_process(tmp_path):
    one = worker(1, "train", 4, tmp_path / "one.npz")
    assert one.returncode == 0, one.stderr
    two = worker(2, "train", 4, tmp_path / "two.npz")
    assert two.returncode == 0, two.stderr
    meta_one = json.loads((tmp_path / "one.npz.json").read_text())
    meta_two = json.loads((tmp_path / "two.npz.json").read_text())
    assert (meta_one["size"], meta_two["size"]) == (1, 2)
    np.testing.assert_allclose(meta_two["losses"], meta_one["losses"], rtol=1e-13)
    with np.load(tmp_path / "one.npz", allow_pickle=False) as a, np.load(tmp_path / "two.npz", allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-12, atol=1e-14, err_msg=name)
        moved = max(float(np.max(np.abs(a[n] - make_net().params[n]))) for n in a.files)
        assert moved > 1e-3                                                # training did change the weights


@pytest.mark.mpi
@pytest.mark.parametrize("mode", ["chunked", "full"])
def test_trainer_on_two_ranks_equals_one_process(tmp_path, mode):
    """Through bptt.training.train.Trainer: chunked truncation (3 updates per batch), Adam, clipping on
    the global norm, hidden state carried across batches and gathered back to the full batch."""
    for n in (1, 2):
        run = worker(n, "trainer", 4, tmp_path / f"{n}.npz", mode)
        assert run.returncode == 0, run.stderr
    one, two = (json.loads((tmp_path / f"{n}.npz.json").read_text()) for n in (1, 2))
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-12)
    np.testing.assert_allclose(two["norms"], one["norms"], rtol=1e-12)    # clipping saw the global norm
    assert min(one["norms"]) > 0.5                                        # ... and clipping did fire
    with np.load(tmp_path / "1.npz", allow_pickle=False) as a, np.load(tmp_path / "2.npz", allow_pickle=False) as b:
        assert b["carried_state"].shape == a["carried_state"].shape == (2, 5, 6)
        for name in a.files:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-11, atol=1e-13, err_msg=name)


@pytest.mark.mpi
def test_checkpoint_and_resume_on_two_ranks_continue_the_one_process_run(tmp_path):
    """2 steps on 2 ranks, checkpoint (carried state gathered), resume on 2 ranks for 2 more
    == 4 steps in one process; and the 2-rank checkpoint resumes in one process too."""
    straight = worker(1, "trainer", 4, tmp_path / "straight.npz", "chunked")
    assert straight.returncode == 0, straight.stderr
    first = worker(2, "trainer-save", 2, tmp_path / "first.npz", tmp_path / "ckpt")
    assert first.returncode == 0, first.stderr
    second = worker(2, "trainer-resume", 2, tmp_path / "second.npz", tmp_path / "ckpt")
    assert second.returncode == 0, second.stderr
    alone = worker(1, "trainer-resume", 2, tmp_path / "alone.npz", tmp_path / "ckpt")
    assert alone.returncode == 0, alone.stderr
    with np.load(tmp_path / "straight.npz", allow_pickle=False) as a:
        for resumed in ("second.npz", "alone.npz"):
            with np.load(tmp_path / resumed, allow_pickle=False) as b:
                for name in a.files:
                    np.testing.assert_allclose(b[name], a[name], rtol=1e-11, atol=1e-13, err_msg=(resumed, name))
    losses = json.loads((tmp_path / "straight.npz.json").read_text())["losses"]
    resumed = json.loads((tmp_path / "second.npz.json").read_text())["losses"]
    np.testing.assert_allclose(resumed, losses[2:], rtol=1e-12)


@pytest.mark.mpi
def test_a_time_limit_stops_every_rank_after_the_same_step(tmp_path):
    run = worker(2, "timed", tmp_path / "steps.json", timeout=30)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "steps.json").read_text())["steps"] == [1, 1]


@pytest.mark.mpi
def test_a_diverged_rank_fails_loudly():
    run = worker(2, "diverge")
    assert run.returncode != 0
    assert "MPI ranks hold different parameters at step 2" in run.stderr, run.stderr
    assert "ranks [0]" in run.stderr and "ranks [1]" in run.stderr


@pytest.mark.mpi
def test_an_exception_on_one_rank_aborts_the_job_instead_of_hanging():
    run = worker(2, "fail", timeout=30)
    assert run.returncode != 0
    assert "[rank 1 of 2] bptt test: error: injected failure on this rank (aborting all 2 MPI ranks)" in run.stderr


@pytest.mark.mpi
def test_an_uncaught_exception_with_the_excepthook_aborts_the_job():
    run = worker(2, "uncaught", timeout=30)
    assert run.returncode != 0
    assert "RuntimeError: injected failure on this rank" in run.stderr                  # the traceback
    assert "[rank 1 of 2] uncaught RuntimeError; aborting all 2 MPI ranks" in run.stderr


@pytest.mark.mpi
def test_a_killed_rank_ends_the_job_instead_of_hanging():
    run = worker(2, "kill", timeout=30)
    assert run.returncode != 0
    text = run.stdout + run.stderr
    assert "BAD TERMINATION" in text and "signal 9" in text.lower(), text


# ------------------------------------------------------- bptt train under mpiexec
def small_text(tmp_path):
    rng = np.random.default_rng(0)
    words = "the quick brown fox jumps over a lazy dog and runs far away".split()
    path = tmp_path / "small.txt"
    path.write_text(" ".join(words[i] for i in rng.integers(0, len(words), 1500)), encoding="utf-8")
    return path


TRAIN_FLAGS = ["--batch", "5", "--seq-len", "12", "--k", "5", "--hidden", "12", "--layers", "2", "--dropout", "0.2",
               "--dtype", "float64", "--checkpoint-every", "2", "--eval-every", "2", "--log-every", "1", "--no-progress"]


def bptt_train(nprocs, *args, timeout=60):
    return mpirun(nprocs, sys.executable, "-m", "bptt", "train", *args, timeout=timeout)


def params_of(run_dir):
    with np.load(Path(run_dir) / "checkpoint.npz", allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files if name.startswith(("params/", "optim/", "state/"))}


def assert_same_run(a_dir, b_dir):
    a, b = params_of(a_dir), params_of(b_dir)
    assert sorted(a) == sorted(b) and any(name.startswith("state/") for name in a)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-10, atol=1e-12, err_msg=name)
    return a


@pytest.mark.mpi
def test_bptt_train_under_mpiexec_equals_one_process(tmp_path):
    """Chunked BPTT (3 updates a batch), 2 layers, dropout (masks drawn for the whole batch),
    Adam, clipping, evaluation, checkpoints: the same run on 1 and 2 ranks."""
    text = small_text(tmp_path)
    one = bptt_train(1, "--text", text, "--steps", "4", "--out", tmp_path / "one", *TRAIN_FLAGS)
    assert one.returncode == 0, one.stderr
    two = bptt_train(2, "--text", text, "--steps", "4", "--out", tmp_path / "two", *TRAIN_FLAGS)
    assert two.returncode == 0, two.stderr
    assert_same_run(tmp_path / "one", tmp_path / "two")
    lines = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("one", "two")]
    assert len(lines[1]) == len(lines[0]) == 4                             # rank 0 alone writes metrics
    for a, b in zip(*lines):
        a, b = json.loads(a), json.loads(b)
        assert b["tokens"] == a["tokens"] == 60                           # the whole batch, T*B
        assert abs(b["loss_per_token"] - a["loss_per_token"]) <= 1e-12 * a["loss_per_token"]
    assert two.stderr.count("train loss") == 1                             # one summary line, from rank 0


@pytest.mark.mpi
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_bptt_train_resumes_under_mpiexec(tmp_path, cell):
    """2 steps + resume 2 steps on 2 ranks == 4 steps in one process (carried state -- (h, c) for
    the LSTM --, Adam slots, dropout generator and step all come back)."""
    text = small_text(tmp_path)
    flags = [*TRAIN_FLAGS, "--cell", cell]
    straight = bptt_train(1, "--text", text, "--steps", "4", "--out", tmp_path / "straight", *flags)
    assert straight.returncode == 0, straight.stderr
    first = bptt_train(2, "--text", text, "--steps", "2", "--out", tmp_path / "mpi", *flags)
    assert first.returncode == 0, first.stderr
    second = bptt_train(2, "--resume", tmp_path / "mpi", "--steps", "2", "--no-progress")
    assert second.returncode == 0, second.stderr
    arrays = assert_same_run(tmp_path / "straight", tmp_path / "mpi")
    carried = sorted(name for name in arrays if name.startswith("state/"))
    assert carried == (["state/0", "state/1"] if cell == "lstm" else ["state/0"])   # (h, c) or h
    assert all(arrays[name].shape == (2, 5, 12) for name in carried)               # the whole batch


def descendants(pid):
    """Process ids below ``pid`` (read from /proc: no psutil needed)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rank_of(pid):
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"PMI_RANK="):
            return int(item.split(b"=", 1)[1])
    return None


@pytest.mark.mpi
def test_sigkill_of_one_rank_ends_a_bptt_train_job(tmp_path):
    """A rank killed from outside in the middle of `bptt train` (no handler can run): mpiexec
    must end the whole job with a message, not leave rank 0 waiting in its Allreduce."""
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to find the ranks")
    import signal
    import time

    command = [need_mpi(), "-n", "2", sys.executable, "-m", "bptt", "train", "--text", str(small_text(tmp_path)),
               "--steps", "100000", "--out", str(tmp_path / "run"), "--log-every", "1", "--no-progress",
               "--batch", "4", "--seq-len", "16", "--hidden", "16"]
    job = start(command)
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 30
        while not (metrics.exists() and metrics.read_text().count("\n") >= 3):   # training is under way
            assert job.poll() is None and time.monotonic() < deadline, job.communicate(timeout=5)
            time.sleep(0.05)
        victims = [pid for pid in descendants(job.pid) if rank_of(pid) == 1]
        assert victims, "rank 1 not found"
        os.kill(victims[0], signal.SIGKILL)
        out, err = job.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        kill_job(job)
        pytest.fail("the job hung after a rank was killed")
    finally:
        kill_job(job)
    assert job.returncode != 0
    assert "BAD TERMINATION" in out + err and "signal 9" in (out + err).lower(), out + err


@pytest.mark.mpi
def test_ctrl_c_to_mpiexec_stops_every_rank_after_the_same_step_and_saves(tmp_path):
    """mpiexec forwards SIGINT to every rank; each turns it into a stop vote, so all finish the
    same step, rank 0 writes the checkpoint, and the job exits 130 -- then it resumes."""
    import signal
    import time

    from bptt.io.checkpoint import load_checkpoint

    text = small_text(tmp_path)
    command = [need_mpi(), "-n", "2", sys.executable, "-m", "bptt", "train", "--text", str(text), "--steps",
               "100000", "--out", str(tmp_path / "run"), "--log-every", "1", "--no-progress", "--batch", "4",
               "--seq-len", "16", "--hidden", "16", "--checkpoint-every", "100000"]
    job = start(command)
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 30
        while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
            assert job.poll() is None and time.monotonic() < deadline, job.communicate(timeout=5)
            time.sleep(0.05)
        job.send_signal(signal.SIGINT)
        out, err = job.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        kill_job(job)
        pytest.fail("the job did not stop after Ctrl-C")
    finally:
        kill_job(job)
    assert job.returncode == 130, err
    assert err.count("stopped by SIGINT at step") == 1, err                 # rank 0 alone reports
    step = load_checkpoint(tmp_path / "run").step
    assert step >= 3 and f"stopped by SIGINT at step {step}," in err
    resumed = bptt_train(2, "--resume", tmp_path / "run", "--steps", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "run").step == step + 2


@pytest.mark.mpi
@pytest.mark.parametrize("flags, fragment", [
    (["--batch", "1"], "batch must be >= the number of MPI ranks (2), got 1"),
    (["--text", "/no/such/file.txt"], "/no/such/file.txt"),
])
def test_bptt_train_bad_input_under_mpiexec_is_one_line_not_a_hang(tmp_path, flags, fragment):
    text = ["--text", small_text(tmp_path)] if "--text" not in flags else []
    run = bptt_train(2, *text, "--steps", "2", "--out", tmp_path / "run", "--no-progress", *flags, timeout=30)
    assert run.returncode != 0
    ours = [line for line in run.stderr.splitlines() if line.startswith("[rank")]
    assert len(ours) == 1 and fragment in ours[0], (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr


@pytest.mark.mpi
@pytest.mark.parametrize("rank1, fragment", [
    (["--steps", "3"], "MPI rank 1 was started with a different --steps than rank 0 (2)"),
    (["--checkpoint-every", "1"], "MPI rank 1 was started with a different --checkpoint-every than rank 0 (2)"),
    (["--hidden", "13"], "MPI rank 1 was started with a different --hidden than rank 0 (12)"),
    (["--text", "OTHER"], "MPI rank 1 was started with a different text (its SHA-256) than rank 0"),
])
def test_ranks_started_differently_stop_with_one_line_naming_the_rank_and_setting(tmp_path, rank1, fragment):
    """Issue 15: different --steps/--checkpoint-every/--epochs deadlocked, different --hidden gave a
    13-line MPICH error stack, different texts trained silently. mpiexec's MPMD form gives rank 1
    other flags than rank 0."""
    launcher = need_mpi()
    text = small_text(tmp_path)
    other = tmp_path / "other.txt"
    other.write_text(text.read_text(encoding="utf-8").replace("fox", "dog"), encoding="utf-8")
    base = ["--text", str(text), "--steps", "2", "--out", str(tmp_path / "run"), *TRAIN_FLAGS]

    def with_(flags):
        argv = list(base)
        for flag, value in zip(flags[::2], flags[1::2]):
            argv[argv.index(flag) + 1] = str(other) if value == "OTHER" else value
        return argv

    command = [launcher, "-n", "1", sys.executable, "-m", "bptt", "train", *base, ":",
               "-n", "1", sys.executable, "-m", "bptt", "train", *with_(rank1)]
    job = start(command)
    try:
        out, err = job.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        kill_job(job)
        pytest.fail(f"MPI job hung: {command}")
    assert job.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("[rank")]
    assert len(ours) == 1 and fragment in ours[0], (job.returncode, err)
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()                                # nothing created


@pytest.mark.mpi
def test_the_mpi_benchmark_runs_in_quick_mode(tmp_path):
    """bench/mpi_allreduce.py must not rot: tiny sizes, 1 and 2 ranks, its JSON read back
    (structure only -- timings are never asserted)."""
    need_mpi()
    bench = HERE.parent.parent / "bench" / "mpi_allreduce.py"
    run = subprocess.run([sys.executable, str(bench), "--quick", "--steps", "2", "--warmup", "1",
                          "--json", str(tmp_path / "bench.json")], capture_output=True, text=True, timeout=120,
                         env=clean_env())
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert [r["ranks"] for r in result["runs"]] == [1, 2]
    model = result["runs"][1]["models"][0]
    assert model["gradient_bytes"] == 4 * model["params"]                  # float32, one buffer
    assert 0 <= model["allreduce_fraction"] <= 1
    assert "model on paper" in run.stdout


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

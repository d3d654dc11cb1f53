"""Data- and model-parallel benchmarks on Dask (this machine: loopback LocalClusters).

Data parallel: a 4096x4096 weight (CSR at 90 % sparsity, and int8 per-channel), a float32 batch of 4096
rows in chunks of 256, on (a) LocalClusters of 1 and 2 worker processes with 1 thread each (x generated
and kept on the workers, the result persisted there: what is timed is the computation, not moving the
batch), (b) Dask's threaded scheduler with 1 and 2 threads, (c) the same kernel on one chunk with one
Numba thread (the per-chunk kernel time the Dask overhead is measured against) and on the whole batch
without Dask, (d) the chunks split over one or two plain processes without Dask: the machine's own ceiling
for two workers at the time of the run (on a shared machine it is well below 2).

Model parallel: an MLP whose weights (704 MB, float32) exceed each worker's memory limit (600 MB, spilling
off) runs on 4 workers with every layer sharded 8 ways, and its outputs are compared with the local model.

Two ways to run it::

    # pytest-benchmark, one configuration after another (JSON for bench/report.py)
    python -m pytest bench/test_bench_parallel.py --benchmark-json bench/results/parallel.json
    # interleaved rounds in one process: speed-up 2 workers vs 1, Dask overhead per chunk, MLP check
    PYTHONPATH=. python bench/test_bench_parallel.py --rounds 7 --out bench/results/parallel-scaling

Size cap: NUMACCEL_BENCH_N (default 4096) sets N = K and the batch (chunks stay 256 rows).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import pytest

import numaccel as na
from numaccel.parallel import limit_threads

N = int(os.environ.get("NUMACCEL_BENCH_N", "4096"))
BATCH = N
CHUNK = 256
SPARSITY = 0.9
KINDS = ("csr", "int8")
MLP_SIZES = (4096, 8192, 8192, 8192, 1024)
MLP_SHARDS = 8
MLP_WORKERS = 4
MLP_LIMIT = 600 * 2**20
MLP_BATCH = 64
PAUSE = 0.25  # seconds between configurations (spinning BLAS/OpenMP threads)


def make_weights(n: int = N, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n), dtype=np.float32)
    return {"csr": na.prune(W, SPARSITY), "int8": na.quantize(W)}


def start_cluster(workers: int, *, memory_limit="auto"):
    import distributed

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            silence_logs=logging.ERROR, memory_limit=memory_limit,
        )
    client = distributed.Client(cluster, set_as_default=False)
    client.wait_for_workers(workers, timeout=120)
    limit_threads(client, numba_threads=1, blas_threads=1)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    return cluster, client


def wait_on(client, collection) -> None:
    import distributed

    with client.as_current():
        distributed.wait(collection)


def _random_chunk(seed: int, rows: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, n), dtype=np.float32)


def cluster_batch(client, n: int = N, batch: int = BATCH):
    """A float32 (batch, n) dask array generated on the workers, chunk ``i`` on worker ``i % workers``
    (a batch already spread evenly over the cluster), and kept there."""
    import dask.array as da

    workers = sorted(client.nthreads())
    futs = [
        client.submit(_random_chunk, i, CHUNK, n, workers=[workers[i % len(workers)]], pure=False)
        for i in range(batch // CHUNK)
    ]
    x = da.concatenate([da.from_delayed(f, shape=(CHUNK, n), dtype=np.float32) for f in futs])
    x = client.persist(x)
    wait_on(client, x)
    return x


def run_on_cluster(client, x, w) -> None:
    """Compute ``linear(x, w)`` on the cluster and keep the result there until it is complete."""
    y = client.persist(na.linear(x, w))
    wait_on(client, y)
    del y


def run_on_cluster_recorded(client, x, w) -> tuple[float, float, int]:
    """``run_on_cluster`` under Dask's task stream: (wall seconds, seconds the chunk tasks spent
    computing, summed over workers, number of chunk tasks)."""
    import distributed

    with distributed.get_task_stream(client=client) as stream:
        t0 = time.perf_counter()
        run_on_cluster(client, x, w)
        wall = time.perf_counter() - t0
    compute = [
        sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        for task in stream.data if "numaccel-linear" in str(task["key"])
    ]
    return wall, float(sum(compute)), len(compute)


def run_threaded(x_local, w, threads: int) -> np.ndarray:
    import dask.array as da

    xd = da.from_array(x_local, chunks=(CHUNK, x_local.shape[1]))
    return na.linear(xd, w).compute(scheduler="threads", num_workers=threads)


def run_local(x, w, threads: int) -> np.ndarray:
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return na.linear(x, w)
    finally:
        numba.set_num_threads(previous)


def info(kind: str, impl: str, threads, batch: int = BATCH) -> dict:
    return {
        "family": "parallel", "impl": impl, "N": N, "K": N, "batch": batch, "chunk": CHUNK,
        "dtype": "float32", "sparsity": SPARSITY if kind == "csr" else 0.0, "group_size": None,
        "weights": kind, "threads": threads, "device": "cpu", "cores": len(os.sched_getaffinity(0)),
    }


# --------------------------------------------------------------------------------------------------
# pytest-benchmark
@pytest.fixture(scope="module")
def weights():
    return make_weights()


@pytest.fixture(scope="module")
def x_local():
    return np.random.default_rng(1).standard_normal((BATCH, N), dtype=np.float32)


@pytest.fixture(scope="module")
def clusters():
    pytest.importorskip("distributed")
    started = {w: start_cluster(w) for w in (1, 2)}
    yield {w: client for w, (_, client) in started.items()}
    for cluster, client in started.values():
        client.close()
        cluster.close()


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_one_chunk_one_thread(benchmark, weights, x_local, kind):
    w, x = weights[kind], np.ascontiguousarray(x_local[:CHUNK])
    run_local(x, w, 1)  # warm-up (compile or cache load)
    benchmark.extra_info.update(info(kind, "numaccel-kernel-chunk", 1, batch=CHUNK))
    benchmark.pedantic(run_local, args=(x, w, 1), rounds=7, warmup_rounds=1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_local_whole_batch(benchmark, weights, x_local, kind, threads):
    w = weights[kind]
    run_local(x_local[:CHUNK], w, threads)
    benchmark.extra_info.update(info(kind, f"numaccel-local-{threads}t", threads))
    benchmark.pedantic(run_local, args=(x_local, w, threads), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_data_parallel_threaded_scheduler(benchmark, weights, x_local, kind, threads):
    pytest.importorskip("dask")
    w = weights[kind]
    benchmark.extra_info.update(info(kind, f"numaccel-dask-threads-{threads}", threads))
    benchmark.pedantic(run_threaded, args=(x_local, w, threads), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_data_parallel_cluster(benchmark, clusters, weights, kind, workers):
    client, w = clusters[workers], weights[kind]
    x = cluster_batch(client)
    time.sleep(PAUSE)
    benchmark.extra_info.update(info(kind, f"numaccel-dask-{workers}x1", f"{workers} workers x 1"))
    benchmark.pedantic(run_on_cluster, args=(client, x, w), rounds=3, warmup_rounds=1)


# --------------------------------------------------------------------------------------------------
# model parallel: an MLP larger than a worker's memory limit
def make_mlp(seed: int = 2):
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for k, n in zip(MLP_SIZES[:-1], MLP_SIZES[1:], strict=True):
        W = rng.standard_normal((n, k), dtype=np.float32)
        W *= np.float32(1.0 / np.sqrt(k))
        weights.append(W)
        biases.append(rng.standard_normal(n, dtype=np.float32) * np.float32(0.1))
    return weights, biases


def memory_limited_cluster():
    import dask

    # Weights must really live in worker memory: no spilling to disk, no pausing; a worker past 95 % of
    # its limit is restarted by its nanny.
    with dask.config.set({"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
                          "distributed.worker.memory.pause": False,
                          "distributed.worker.memory.terminate": 0.95}):
        return start_cluster(MLP_WORKERS, memory_limit=MLP_LIMIT)


def worker_rss(client) -> dict:
    def rss():
        import psutil

        return psutil.Process().memory_info().rss

    return client.run(rss)


def mlp_check(client, weights, biases) -> dict:
    """Run the sharded MLP on ``client``, compare with the local model; return the figures."""
    local = na.nn.MLP.from_arrays(weights, biases=biases)
    sharded = na.nn.MLP.from_arrays([na.shard(W, MLP_SHARDS) for W in weights], biases=biases)
    x = np.random.default_rng(3).standard_normal((MLP_BATCH, MLP_SIZES[0]), dtype=np.float32)
    ref = local(x)
    t0 = time.perf_counter()
    y = sharded(x, client=client)  # first call: shards placed on the workers
    first = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        y = sharded(x, client=client)
        times.append(time.perf_counter() - t0)
    rel = float(np.linalg.norm(y.astype(np.float64) - ref) / np.linalg.norm(ref.astype(np.float64)))
    rss = worker_rss(client)
    return {
        "weights_bytes": int(sum(W.nbytes for W in weights)), "worker_memory_limit": MLP_LIMIT,
        "workers": MLP_WORKERS, "shards_per_layer": MLP_SHARDS, "sizes": list(MLP_SIZES), "batch": MLP_BATCH,
        "first_call_s": first, "median_call_s": statistics.median(times), "relative_error": rel,
        "max_abs_diff": float(np.abs(y - ref).max()), "worker_rss_max": int(max(rss.values())),
        "workers_alive_after": len(client.nthreads()),
    }


def test_model_parallel_mlp_beyond_worker_memory(benchmark):
    pytest.importorskip("distributed")
    pytest.importorskip("psutil")
    weights, biases = make_mlp()
    cluster, client = memory_limited_cluster()
    try:
        figures = mlp_check(client, weights, biases)
        assert figures["weights_bytes"] > MLP_LIMIT
        assert figures["relative_error"] < 1e-5 and figures["workers_alive_after"] == MLP_WORKERS
        sharded = na.nn.MLP.from_arrays([na.shard(W, MLP_SHARDS) for W in weights], biases=biases)
        x = np.random.default_rng(3).standard_normal((MLP_BATCH, MLP_SIZES[0]), dtype=np.float32)
        sharded(x, client=client)
        benchmark.extra_info.update(info("dense", "numaccel-model-parallel-mlp", f"{MLP_WORKERS} workers x 1",
                                         batch=MLP_BATCH))
        benchmark.extra_info.update(figures)
        benchmark.pedantic(sharded, args=(x,), kwargs={"client": client}, rounds=3, warmup_rounds=1)
    finally:
        client.close()
        cluster.close()


# --------------------------------------------------------------------------------------------------
# interleaved scaling run (python bench/test_bench_parallel.py)
def _median_ms(samples) -> float:
    return 1e3 * statistics.median(samples)


# The machine's own ceiling, without Dask: the same chunk kernels in one or two plain processes.
_PROC: dict = {}


def _proc_init(weights) -> None:
    import numba

    numba.set_num_threads(1)
    _PROC["weights"] = weights
    _PROC["x"] = np.random.default_rng(1).standard_normal((CHUNK, N), dtype=np.float32)
    for w in weights.values():  # load or compile the kernels in every process before any timing
        na.linear(_PROC["x"], w)


def _proc_chunks(kind: str, n: int) -> float:
    w, x = _PROC["weights"][kind], _PROC["x"]
    t0 = time.perf_counter()
    for _ in range(n):
        na.linear(x, w)
    return time.perf_counter() - t0


def run_processes(pool, kind: str, procs: int) -> None:
    """All the batch's chunks split over ``procs`` plain processes running at once (1 thread each)."""
    chunks = BATCH // CHUNK
    futs = [pool.submit(_proc_chunks, kind, chunks // procs) for _ in range(procs)]
    for f in futs:
        f.result()


def scaling(rounds: int) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    weights = make_weights()
    x_local = np.random.default_rng(1).standard_normal((BATCH, N), dtype=np.float32)
    chunk = np.ascontiguousarray(x_local[:CHUNK])
    started = {w: start_cluster(w) for w in (1, 2)}
    clients = {w: c for w, (_, c) in started.items()}
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=_proc_init,
                               initargs=(weights,))
    for kind in weights:  # start both processes (each runs the initializer) before any timing
        run_processes(pool, kind, 2)
    results = {}
    try:
        for kind, w in weights.items():
            xs = {nw: cluster_batch(c) for nw, c in clients.items()}
            configs = {
                "kernel-chunk-1t": lambda w=w: run_local(chunk, w, 1),
                "local-1t": lambda w=w: run_local(x_local, w, 1),
                "local-2t": lambda w=w: run_local(x_local, w, 2),
                "threads-1": lambda w=w: run_threaded(x_local, w, 1),
                "threads-2": lambda w=w: run_threaded(x_local, w, 2),
                "dask-1x1": lambda w=w, xs=xs: run_on_cluster_recorded(clients[1], xs[1], w),
                "dask-2x1": lambda w=w, xs=xs: run_on_cluster_recorded(clients[2], xs[2], w),
                "procs-1": lambda kind=kind: run_processes(pool, kind, 1),
                "procs-2": lambda kind=kind: run_processes(pool, kind, 2),
            }
            samples = {name: [] for name in configs}
            # Dask overhead per chunk from the task stream, in the same run: (workers * wall - time the
            # chunk tasks computed) / chunks, against the tasks' mean compute time.
            overhead = {"dask-1x1": [], "dask-2x1": []}
            for fn in configs.values():  # warm-up
                fn()
            for _ in range(rounds):
                for name, fn in configs.items():
                    time.sleep(PAUSE)
                    t0 = time.perf_counter()
                    got = fn()
                    wall = time.perf_counter() - t0
                    if name in overhead:
                        wall, compute, ntasks = got
                        workers = int(name[5])
                        overhead[name].append(((workers * wall - compute) / ntasks, compute / ntasks))
                    samples[name].append(wall)
            med = {name: _median_ms(s) for name, s in samples.items()}
            chunks = BATCH // CHUNK
            kernel = med["kernel-chunk-1t"]
            stream = {}
            for name, rows in overhead.items():
                per_chunk = statistics.median(o for o, _ in rows)
                task = statistics.median(c for _, c in rows)
                stream[name] = {"overhead_ms": 1e3 * per_chunk, "task_compute_ms": 1e3 * task,
                                "overhead_frac": per_chunk / task}
            results[kind] = {
                "task_stream": stream,
                "median_ms": med,
                "min_ms": {name: 1e3 * min(s) for name, s in samples.items()},
                "speedup_2x1_vs_1x1": med["dask-1x1"] / med["dask-2x1"],
                "speedup_2_processes_no_dask": med["procs-1"] / med["procs-2"],
                "speedup_threads_2_vs_1": med["threads-1"] / med["threads-2"],
                "dask_overhead_per_chunk_ms": (med["dask-1x1"] - chunks * kernel) / chunks,
                "dask_overhead_per_chunk_frac": (med["dask-1x1"] - chunks * kernel) / chunks / kernel,
                "threads_overhead_per_chunk_frac": (med["threads-1"] - chunks * kernel) / chunks / kernel,
            }
    finally:
        pool.shutdown()
        for cluster, client in started.values():
            client.close()
            cluster.close()
    return results


def write_report(path: str, doc: dict) -> None:
    with open(path + ".json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
    lines = [
        "# Data- and model-parallel figures",
        "",
        f"Machine: {doc['machine']['cores']} cores ({doc['machine']['cpu']}), load average at start "
        f"{doc['machine']['loadavg_start']}, at end {doc['machine']['loadavg_end']}.",
        f"Command: `{doc['command']}`; {doc['rounds']} interleaved rounds, medians.",
        "",
        f"Data parallel: weight {N}x{N} (CSR at {SPARSITY:.0%} sparsity, int8 per channel), float32 batch "
        f"{BATCH} in chunks of {CHUNK}; LocalCluster workers with 1 thread and 1 Numba thread each.",
        "",
        "| weights | kernel/chunk, 1 thread (ms) | local 1t (ms) | local 2t (ms) | threads-1 (ms) "
        "| threads-2 (ms) | dask 1x1 (ms) | dask 2x1 (ms) | 2x1 vs 1x1 | threads 2 vs 1 "
        "| Dask overhead/chunk vs kernel/chunk | task stream 1x1: overhead/chunk, task | task stream 2x1 "
        "| 2 vs 1 plain processes (no Dask) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in doc["data_parallel"].items():
        m = r["median_ms"]
        lines.append(
            f"| {kind} | {m['kernel-chunk-1t']:.1f} | {m['local-1t']:.0f} | {m['local-2t']:.0f} | "
            f"{m['threads-1']:.0f} | {m['threads-2']:.0f} | {m['dask-1x1']:.0f} | {m['dask-2x1']:.0f} | "
            f"{r['speedup_2x1_vs_1x1']:.2f}x | {r['speedup_threads_2_vs_1']:.2f}x | "
            f"{r['dask_overhead_per_chunk_ms']:.2f} ms ({100 * r['dask_overhead_per_chunk_frac']:.1f} %) | "
            + " | ".join(
                f"{t['overhead_ms']:.2f} ms / {t['task_compute_ms']:.1f} ms "
                f"({100 * t['overhead_frac']:.1f} %)"
                for t in (r["task_stream"]["dask-1x1"], r["task_stream"]["dask-2x1"])
            )
            + f" | {r['speedup_2_processes_no_dask']:.2f}x |"
        )
    mlp = doc.get("model_parallel")
    if mlp:
        lines += [
            "",
            f"Model parallel: MLP {mlp['sizes']} float32, weights {mlp['weights_bytes'] / 2**20:.0f} MiB, "
            f"{mlp['workers']} workers with a {mlp['worker_memory_limit'] / 2**20:.0f} MiB memory limit each "
            f"(spilling off), {mlp['shards_per_layer']} shards per layer, batch {mlp['batch']}: "
            f"relative error vs the local model {mlp['relative_error']:.2e} "
            f"(max |diff| {mlp['max_abs_diff']:.2e}), largest worker RSS "
            f"{mlp['worker_rss_max'] / 2**20:.0f} MiB, {mlp['workers_alive_after']} workers alive "
            f"after; first call {mlp['first_call_s']:.2f} s (places the shards), then "
            f"{1e3 * mlp['median_call_s']:.0f} ms per forward.",
        ]
    with open(path + ".md", "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="bench/results/parallel-scaling")
    ap.add_argument("--no-mlp", action="store_true", help="skip the model-parallel MLP check")
    args = ap.parse_args(argv)
    doc = {
        "command": " ".join(["python"] + sys.argv),
        "rounds": args.rounds,
        "machine": {"cores": len(os.sched_getaffinity(0)), "cpu": platform.processor() or platform.machine(),
                    "loadavg_start": [round(v, 2) for v in os.getloadavg()]},
    }
    doc["data_parallel"] = scaling(args.rounds)
    if not args.no_mlp:
        weights, biases = make_mlp()
        cluster, client = memory_limited_cluster()
        try:
            doc["model_parallel"] = mlp_check(client, weights, biases)
        finally:
            client.close()
            cluster.close()
    doc["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    write_report(args.out, doc)
    print(open(args.out + ".md", encoding="utf-8").read())
    return 0


if __name__ == "__main__":
    sys.exit(main())

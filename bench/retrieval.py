"""Retrieval, side by side with references measured in the same run.

    .venv/bin/python bench/retrieval.py [--count 64] [--rounds 3] [--sizes 10000,100000,1000000]

1. Indexing throughput. ``--count`` photos (crops of the sample photos, 320×240 PNG files, as in
   bench/batch.py) are indexed by content:

   * reference: what a user writes by hand with the same model: a loop that opens each file with
     Pillow, resizes it as our descriptor does (shorter side 224, antialiased), runs torchvision's
     MobileNetV2 ``features[:18]`` (the same verified weights, frozen, eval, inference mode) on the
     image and its mirror in one batch, averages over space, adds the two, L2-normalises, and
     saves all vectors with ``np.save``.
   * ours: ``create_index`` + ``run_index`` on the local engine, as ``dreamkit index build DIR``
     does (input listing, sha256 of every file, records, the SQLite table, the shard file).

   Interleaved rounds, median reported; overhead = ours / reference - 1 (the issue's target: ≤ 10%).

2. Search. For each size N, N synthetic descriptors of the default dimension (320): clustered
   (2,000 random unit centres, each point a centre plus Gaussian noise of 0.035 per value,
   normalised, so that points of a centre score about 0.7 with each other, like copies of an
   image; uniform random vectors in 320-d have no near neighbours to find). 1,000 held-out queries from the same distribution.

   * exact: a competent exact search: the f32 matrix in memory, ``torch`` matrix product and
     ``topk`` (blocked as ours is); one query at a time (latency), and all 1,000 at once (throughput).
   * usearch f16 / i8: the HNSW graph (default connectivity), saved, then opened as a view from
     disk as ``dreamkit index search`` does; one query at a time and 1,000 at once.

   Reports build time, latency per query (median), speed-up over exact, recall@10 against
   exact, the graph file's size and the process's resident memory added by opening the view
   and by searching it. Target: ≥ 20x faster than exact at 1M with recall@10 ≥ 0.95.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DIM = 320


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rss_mb() -> float:
    """Current resident memory of this process, MB (from /proc; ru_maxrss is a peak)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


# -- 1. indexing -------------------------------------------------------------------------------
def reference_index(paths: list[pathlib.Path], out: pathlib.Path) -> None:
    import torch.nn.functional as F
    import torchvision
    from PIL import Image


    model = _reference_model()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    vectors = []
    with torch.inference_mode():
        for path in paths:
            image = torchvision.transforms.functional.pil_to_tensor(Image.open(path).convert("RGB")).float() / 255
            h, w = image.shape[-2:]
            scale = 224 / min(h, w)
            x = F.interpolate(image[None], size=(round(h * scale), round(w * scale)), mode="bilinear",
                              antialias=True).clamp(0, 1)
            x = (x - mean) / std
            features = model(torch.cat([x, x.flip(-1)])).mean(dim=(2, 3))
            features = F.normalize(features, dim=1)
            vectors.append(F.normalize(features[0] + features[1], dim=0).numpy())
    np.save(out / "vectors.npy", np.stack(vectors))


def _reference_model() -> torch.nn.Module:
    """Loaded in every run, as a script does (ours loads its model in every run too)."""
    import torchvision

    from dreamkit.plugins import get_host

    path = get_host().weights.resolve("mobilenet_v2.IMAGENET1K_V1")
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.features[:18].eval().requires_grad_(False)


def ours_index(folder: pathlib.Path, out: pathlib.Path) -> None:
    from dreamkit.batch import BatchSettings, LocalEngine
    from dreamkit_retrieve import create_index, make_spec, run_index

    index = create_index(out / "index", make_spec("content"), [str(folder)])
    with index:
        run_index(index, BatchSettings(device="cpu"), LocalEngine(), progress=False)


def bench_indexing(count: int, rounds: int) -> None:
    from batch import write_photos

    from dreamkit.runtime import configure

    configure(None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "photos"
        paths = write_photos(folder, count)
        modes = {"reference": lambda out: reference_index(paths, out), "ours": lambda out: ours_index(folder, out)}
        for run in modes.values():  # warm-up: weights verified, models built, caches filled
            with tempfile.TemporaryDirectory() as out:
                run(pathlib.Path(out))
        times: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(rounds):
            for name, run in modes.items():
                with tempfile.TemporaryDirectory() as out:
                    start = time.perf_counter()
                    run(pathlib.Path(out))
                    times[name].append(time.perf_counter() - start)
        ref = statistics.median(times["reference"])
        ours = statistics.median(times["ours"])
        print(f"indexing {count} photos (320x240), median of {rounds} interleaved rounds:")
        print(f"  reference loop   {ref:7.2f} s   {count / ref:6.1f} img/s")
        print(f"  dreamkit index   {ours:7.2f} s   {count / ours:6.1f} img/s   overhead {ours / ref - 1:+.1%}")


# -- 2. search ---------------------------------------------------------------------------------
def clustered(n: int, rng: np.random.Generator, centres: np.ndarray, noise: float = 0.035) -> np.ndarray:
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, DIM), dtype=np.float32) * noise
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_topk(matrix: torch.Tensor, queries: torch.Tensor, k: int, block: int = 262_144) -> np.ndarray:
    best_s = torch.full((len(queries), 0), -float("inf"))
    best_i = torch.empty((len(queries), 0), dtype=torch.long)
    for start in range(0, len(matrix), block):
        s, i = (queries @ matrix[start:start + block].T).topk(k, dim=1)
        best_s, order = torch.cat([best_s, s], 1).topk(k, dim=1)
        best_i = torch.cat([best_i, i + start], 1).gather(1, order)
    return best_i.numpy()


def bench_search(sizes: list[int], dtypes: list[str], queries_n: int = 1000, k: int = 10) -> None:
    from usearch.index import Index

    from dreamkit_retrieve.ann import EXPANSION_SEARCH

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = clustered(queries_n, rng, centres)
    q = torch.from_numpy(queries)
    single = 100  # queries timed one at a time
    print(f"\nsearch: {DIM}-d clustered descriptors, {queries_n} held-out queries, k={k}, threads={torch.get_num_threads()}")
    for n in sizes:
        data = clustered(n, rng, centres)
        matrix = torch.from_numpy(data)
        exact_topk(matrix, q[:2], k)  # warm-up
        start = time.perf_counter()
        truth = exact_topk(matrix, q, k)
        exact_batch = (time.perf_counter() - start) / queries_n
        lat = []
        for i in range(single):
            start = time.perf_counter()
            exact_topk(matrix, q[i:i + 1], k)
            lat.append(time.perf_counter() - start)
        exact_single = statistics.median(lat)
        print(f"  N={n:>9,}  exact: {exact_single * 1e3:8.3f} ms/query alone, {exact_batch * 1e3:7.3f} ms/query in a "
              f"batch of {queries_n}", flush=True)
        for dtype in dtypes:
            with tempfile.TemporaryDirectory() as tmp:
                graph = Index(ndim=DIM, metric="cos", dtype=dtype)
                start = time.perf_counter()
                graph.add(np.arange(n, dtype=np.uint64), data, threads=os.cpu_count() or 1)
                build = time.perf_counter() - start
                path = pathlib.Path(tmp) / "ann.usearch"
                graph.save(str(path))
                del graph
                before = rss_mb()
                view = Index.restore(str(path), view=True)
                opened = rss_mb()
                for ef in sorted({64, EXPANSION_SEARCH}):  # usearch's default, then ours
                    view.expansion_search = ef
                    view.search(queries[:2], k)  # warm-up
                    start = time.perf_counter()
                    found = view.search(queries, k, threads=os.cpu_count() or 1).keys
                    ann_batch = (time.perf_counter() - start) / queries_n
                    lat = []
                    for i in range(single):
                        start = time.perf_counter()
                        view.search(queries[i], k)
                        lat.append(time.perf_counter() - start)
                    ann_single = statistics.median(lat)
                    searched = rss_mb()
                    recall = np.mean([len(set(found[i].tolist()) & set(truth[i].tolist())) / k for i in range(queries_n)])
                    size_mb = path.stat().st_size / 1e6
                    print(f"  N={n:>9,}  usearch {dtype:>3} ef={ef:<3}: {ann_single * 1e3:7.3f} ms/query alone "
                          f"({exact_single / ann_single:6.1f}x exact), {ann_batch * 1e3:7.3f} ms/query batched "
                          f"({exact_batch / ann_batch:5.1f}x), recall@10 {recall:.4f}, build {build:6.1f} s, "
                          f"file {size_mb:7.1f} MB, RSS +{opened - before:.1f} MB opened, +{searched - before:.1f} MB "
                          "after searching", flush=True)
                del view
        del matrix, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dtypes", default="f16,i8", help="usearch storage types to measure")
    parser.add_argument("--skip-indexing", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    if not args.skip_indexing:
        bench_indexing(args.count, args.rounds)
    if not args.skip_search:
        bench_search([int(s) for s in args.sizes.split(",") if s], args.dtypes.split(","))


if __name__ == "__main__":
    main()

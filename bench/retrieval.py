"""Retrieval, side by side with references measured in the same run.

    .venv/bin/python bench/retrieval.py [--count 64] [--rounds 3] [--sizes 10000,100000,1000000]
                                        [--dupes] [--real-size N] [--collection PHOTOS GRIDS DISTRACTORS]

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

3. Near-duplicate groups on a labelled collection (``--dupes``): 26 photos (scikit-image's and
   matplotlib's samples), 8 altered copies of each (half size, JPEG q40, 80% crop, mirrored,
   brighter, darker, rotated +5° and −8°), 26 grids (2×2 mosaics of four different photos: they
   share content with four photos and duplicate none) and 300 distractors (100 solid colours, 100
   gradients, 100 smooth noise fields). Truth: each photo with its copies is one group; all else
   is alone. ``dreamkit index build`` + ``dupes`` at the default threshold, pairwise precision and
   recall, beside the transitive grouping at the same threshold (what dreamkit did before, and what
   a union-find over "duplicate pairs" gives).

4. Graph recall on real descriptors (``--real-size``, default 200,000): about 2,000 real content
   descriptors (random crops, scales, rotations and colour changes of the photos, the grids and the
   distractors), replicated with Gaussian perturbations (σ 0.02–0.05 per value: replicas score
   0.75–0.95 with their source, as copies do) to the size asked for; 1,000 held-out queries made
   the same way. recall@10 of the graph as dreamkit builds it (``ann.new_graph``) against exact
   search, per search expansion, and what ``estimate_recall`` (``index info``) says for that graph;
   then the same for uniform random vectors (no structure: where graphs fail), to show the
   estimate warns there.
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
from dataclasses import dataclass

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


# -- 3. dupes on a labelled collection ----------------------------------------------------------
COLLECTION_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg",
                     "camera.png", "coins.png", "moon.png", "page.png", "hubble_deep_field.jpg", "ihc.png", "horse.png",
                     "text.png", "clock_motion.png", "cell.png", "color.png", "logo.png", "microaneurysms.png",
                     "phantom.png", "brick.png", "grass.png", "gravel.png", "grace_hopper.jpg",
                     "Minduka_Present_Blue_Pack.png", "logo2.png"]


def _sample_path(name: str) -> pathlib.Path:
    import matplotlib
    import skimage.data

    mpl = pathlib.Path(matplotlib.get_data_path()) / "sample_data" / name
    return mpl if mpl.exists() else pathlib.Path(skimage.data.__file__).parent / name


def _copies(picture):
    """The same alterations as tests/test_retrieve.py's copies_of."""
    import io

    from PIL import Image, ImageEnhance

    w, h = picture.size
    jpeg = io.BytesIO()
    picture.save(jpeg, "JPEG", quality=40)
    return {
        "half-size": picture.resize((w // 2, h // 2), Image.LANCZOS),
        "jpeg-q40": Image.open(jpeg).convert("RGB"),
        "crop-80%": picture.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9))),
        "mirrored": picture.transpose(Image.FLIP_LEFT_RIGHT),
        "brighter": ImageEnhance.Brightness(picture).enhance(1.3),
        "darker": ImageEnhance.Brightness(picture).enhance(0.7),
        "rotated+5": picture.rotate(5, Image.BILINEAR),
        "rotated-8": picture.rotate(-8, Image.BILINEAR),
    }


def _distractors(rng: np.random.Generator, count: int = 100):
    """``count`` solid colours (pairwise distinct by > 24 in some channel), ``count`` gradients and
    ``count`` smooth noise fields."""
    import torch.nn.functional as F
    from PIL import Image

    colours: list[np.ndarray] = []
    while len(colours) < count:
        colour = rng.integers(0, 256, 3)
        if all(np.abs(colour - c).max() > 24 for c in colours):
            colours.append(colour)
    for i, colour in enumerate(colours):
        yield f"solid-{i:03d}.png", Image.new("RGB", (int(rng.integers(64, 400)), int(rng.integers(64, 400))),
                                               tuple(int(v) for v in colour))
    for i in range(count):
        h, w = int(rng.integers(64, 400)), int(rng.integers(64, 400))
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
        t = (t - t.min()) / max(1e-6, np.ptp(t))
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        yield f"gradient-{i:03d}.png", Image.fromarray((255 * (a + (b - a) * t[..., None])).astype(np.uint8))
    for i in range(count):
        h, w = int(rng.integers(64, 400)), int(rng.integers(64, 400))
        cells = int(rng.integers(2, 32))
        field = torch.from_numpy(rng.uniform(0, 1, (1, 3, cells, cells)).astype(np.float32))
        smooth = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        yield f"noise-{i:03d}.png", Image.fromarray((smooth[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))


@dataclass(frozen=True)
class Collection:
    """How much of the labelled collection to write: the first ``photos`` of COLLECTION_PHOTOS (each
    with its 8 copies), ``grids`` mosaics, ``distractors`` of each plain kind. The defaults are the
    measured collection; the test suite's smoke run writes a small one."""

    photos: int = len(COLLECTION_PHOTOS)
    grids: int = 26
    distractors: int = 100

    def describe(self) -> str:
        return (f"{self.photos} photos, {8 * self.photos} copies, {self.grids} grids, {3 * self.distractors} "
                "distractors")


def write_collection(folder: pathlib.Path, seed: int = 0, collection: Collection = Collection()) -> dict[str, str]:
    """The labelled collection; returns file name → label (the photo it shows, or itself)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels: dict[str, str] = {}
    fast = {"compress_level": 1}  # lossless either way; PNG's default level 6 was 90% of writing 560 files
    pictures = {name: Image.open(_sample_path(name)).convert("RGB") for name in COLLECTION_PHOTOS[:collection.photos]}
    for name, picture in pictures.items():
        stem = pathlib.Path(name).stem
        picture.save(folder / f"{stem}.png", **fast)
        labels[f"{stem}.png"] = stem
        for kind, copy in _copies(picture).items():
            copy.save(folder / f"{stem}--{kind}.png", **fast)
            labels[f"{stem}--{kind}.png"] = stem
    names = list(pictures)
    for i in range(collection.grids):
        chosen = rng.choice(len(names), 4, replace=False)
        grid = Image.new("RGB", (512, 512))
        for cell, index in enumerate(chosen):
            grid.paste(pictures[names[index]].resize((256, 256), Image.LANCZOS), ((cell % 2) * 256, (cell // 2) * 256))
        grid.save(folder / f"grid-{i:02d}.png", **fast)
        labels[f"grid-{i:02d}.png"] = f"grid-{i:02d}"
    for name, picture in _distractors(rng, collection.distractors):
        picture.save(folder / name, **fast)
        labels[name] = name
    return labels


def pairwise_scores(groups: list[list[str]], labels: dict[str, str]) -> tuple[float, float]:
    found = {frozenset((a, b)) for group in groups for a in group for b in group if a < b}
    right = {pair for pair in found if len({labels[p] for p in pair}) == 1}
    sizes: dict[str, int] = {}
    for label in labels.values():
        sizes[label] = sizes.get(label, 0) + 1
    expected = sum(n * (n - 1) // 2 for n in sizes.values())
    return len(right) / max(1, len(found)), len(right) / max(1, expected)


def transitive_groups(index, threshold: float, neighbours: int = 10) -> list[list[str]]:
    """The grouping dreamkit had before: pairs at or above the threshold among each image's
    nearest, joined transitively (union-find)."""
    from dreamkit_retrieve.ann import exact_search

    keys, matrix = index.vectors()
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    found, scores = exact_search(matrix, np.arange(len(keys)), matrix, neighbours + 1)
    for i, (row_k, row_s) in enumerate(zip(found, scores)):
        for j, score in zip(row_k, row_s):
            if j != i and score >= threshold:
                parent[root(int(j))] = root(i)
    items = index.store.lookup(keys.tolist())
    members: dict[int, list[str]] = {}
    for i, key in enumerate(keys):
        members.setdefault(root(i), []).append(pathlib.Path(items[int(key)].path).name)
    return [group for group in members.values() if len(group) > 1]


def bench_dupes(collection: Collection) -> None:
    from dreamkit.batch import BatchSettings, LocalEngine
    from dreamkit_retrieve import create_index, make_spec, run_index
    from dreamkit_retrieve.index import DUPES_THRESHOLD

    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "collection"
        labels = write_collection(folder, collection=collection)
        index = create_index(pathlib.Path(tmp) / "index", make_spec("content"), [str(folder)])
        with index:
            run_index(index, BatchSettings(device="cpu"), LocalEngine(), progress=False)
            ours = [[pathlib.Path(hit.item.path).name for hit in group] for group in index.dupes(DUPES_THRESHOLD)]
            before = transitive_groups(index, DUPES_THRESHOLD)
            blankness: dict[str, list[float]] = {}
            for item in index.store.items():
                name = pathlib.Path(item.path).name
                kind = "photos and copies" if "-" not in name or "--" in name else name.split("-")[0]
                blankness.setdefault(kind, []).append(item.blankness)
        print(f"\ndupes on a labelled collection: {len(labels)} images ({collection.describe()}), threshold "
              f"{DUPES_THRESHOLD}:")
        from dreamkit_retrieve.store import LOW_INFORMATION

        for kind, values in blankness.items():
            print(f"  blankness of {kind:<18} {min(values):.3f} to {max(values):.3f}; "
                  f"{sum(v >= LOW_INFORMATION for v in values)} of {len(values)} low-information")
        for name, groups in (("transitive (before)", before), ("dreamkit dupes", ours)):
            precision, recall = pairwise_scores(groups, labels)
            print(f"  {name:<20} {len(groups):4d} groups, largest {max(map(len, groups), default=0):4d}: "
                  f"pairwise precision {precision:.3f}, recall {recall:.3f}", flush=True)


# -- 4. graph recall on real descriptors ---------------------------------------------------------
def real_descriptors(count_per_picture: int = 60, seed: int = 0, collection: Collection = Collection()) -> np.ndarray:
    """Content descriptors of random crops, scales, rotations and colour changes of the collection's
    photos, grids and distractors (about 2,000 rows)."""
    from PIL import Image, ImageEnhance

    from dreamkit.io import pil_to_tensor
    from dreamkit_retrieve import Describer, make_spec

    rng = np.random.default_rng(seed)
    describer = Describer(make_spec("content"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "collection"
        write_collection(folder, collection=collection)
        sources = sorted(p for p in folder.glob("*.png") if "--" not in p.name)
        images = []
        for path in sources:
            picture = Image.open(path).convert("RGB")
            plain = path.name.startswith(("solid", "gradient", "noise"))  # few views: they all look alike
            many = min(2, count_per_picture) if plain else count_per_picture
            for _ in range(many):
                w, h = picture.size
                cw, ch = int(w * rng.uniform(0.4, 1)), int(h * rng.uniform(0.4, 1))
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                view = picture.crop((x, y, x + cw, y + ch)).rotate(float(rng.uniform(-15, 15)), Image.BILINEAR)
                view = ImageEnhance.Color(ImageEnhance.Brightness(view).enhance(rng.uniform(0.6, 1.4))).enhance(
                    rng.uniform(0.5, 1.5))
                images.append(pil_to_tensor(view.resize((max(32, cw // 2), max(32, ch // 2)))))
        vectors = np.concatenate([describer.embed(images[i:i + 32]) for i in range(0, len(images), 32)])
    return vectors


def perturbed(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    out = base[rng.integers(0, len(base), n)] + rng.standard_normal((n, base.shape[1]), dtype=np.float32) * \
        rng.uniform(0.02, 0.05, (n, 1)).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def bench_real_recall(size: int, per_picture: int = 60, k: int = 10, collection: Collection = Collection()) -> None:
    from dreamkit_retrieve import ann

    rng = np.random.default_rng(1)
    start = time.perf_counter()
    base = real_descriptors(per_picture, collection=collection)
    print(f"\ngraph recall@{k} at {size:,}: {len(base)} real descriptors ({time.perf_counter() - start:.0f} s), "
          f"replicated with perturbations; connectivity {ann.CONNECTIVITY}, expansion_add {ann.EXPANSION_ADD}",
          flush=True)
    for kind, data, queries in (
            ("real, perturbed", perturbed(base, size, rng), perturbed(base, 1000, rng)),
            ("uniform random", _unit(rng.standard_normal((size, DIM), dtype=np.float32)),
             _unit(rng.standard_normal((1000, DIM), dtype=np.float32)))):
        truth = exact_topk(torch.from_numpy(data), torch.from_numpy(queries), k)
        start = time.perf_counter()
        graph = ann.new_graph(DIM)
        graph.add(np.arange(size, dtype=np.uint64), data, threads=os.cpu_count() or 1)
        build = time.perf_counter() - start
        for ef in (64, 128, 256):
            graph.expansion_search = ef
            found = graph.search(queries, k, threads=os.cpu_count() or 1).keys
            recall = np.mean([len(set(found[i].tolist()) & set(truth[i].tolist())) / k for i in range(len(queries))])
            estimate = ann.estimate_recall(graph, np.arange(size, dtype=np.uint64), data, k) if \
                ef == ann.EXPANSION_SEARCH else None
            shown = f", estimate from stored vectors {estimate:.3f}" if estimate is not None else ""
            print(f"  {kind:<16} ef={ef:<3}: recall@{k} {recall:.4f} (held-out queries){shown}; build {build:.0f} s",
                  flush=True)
        del graph


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dtypes", default="f16,i8", help="usearch storage types to measure")
    parser.add_argument("--skip-indexing", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--dupes", action="store_true", help="part 3: dupes on the labelled collection")
    parser.add_argument("--real-size", type=int, default=0, help="part 4: graph recall on N real-based descriptors")
    parser.add_argument("--real-per-picture", type=int, default=60, help="part 4: described views of each picture")
    parser.add_argument("--collection", type=int, nargs=3, default=None, metavar=("PHOTOS", "GRIDS", "DISTRACTORS"),
                        help="parts 3 and 4: a smaller labelled collection (default: all 26 photos, 26 grids, "
                             "100 distractors of each kind)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    if not args.skip_indexing:
        bench_indexing(args.count, args.rounds)
    if not args.skip_search:
        bench_search([int(s) for s in args.sizes.split(",") if s], args.dtypes.split(","))
    collection = Collection(*args.collection) if args.collection else Collection()
    if args.dupes:
        bench_dupes(collection)
    if args.real_size:
        bench_real_recall(args.real_size, args.real_per_picture, collection=collection)


if __name__ == "__main__":
    main()

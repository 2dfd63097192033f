"""Building and updating an index through dreamkit's batch runner.

The inputs are listed as ``dreamkit run`` lists them (folders, ``-r``, globs, list files, video
frames; bad files and unreadable inputs become ``failed`` records), each new or changed image is
a job of :class:`EmbedWork`, and the jobs run on the batch engines: this process, or a Ray actor
pool for large collections (each actor loads the model once). Records come back with their
descriptor; :class:`IndexWriter` commits them in shards as they arrive, so an interrupted build
keeps what it did and the same command resumes it.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from dreamkit.batch import BatchSettings, BatchSummary, Engine, LocalEngine, run_batch
from dreamkit.batch.inputs import InputItem, glob_base, list_inputs
from dreamkit.batch.jobs import InputRunner, base_record
from dreamkit.batch.work import Work
from dreamkit.plugins import PluginHost

from .descriptors import Describer, DescriptorSpec, thumbnail_of
from .index import ImageIndex, recall_words
from .store import LOW_INFORMATION, BadIndexError, IndexStore

#: Images committed to the index per shard while a build runs (a crash loses at most these).
SHARD_ROWS = 2048
#: Images a runner embeds at once (same-size images share a forward pass).
CHUNK = 16


@dataclass(frozen=True)
class EmbedJob:
    """One image (or video frame) to describe."""

    item: InputItem

    def to_dict(self) -> dict[str, Any]:
        return self.item.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EmbedJob":
        return cls(InputItem.from_dict(data))


@dataclass
class EmbedWork(Work):
    """Describe each input: its record carries the descriptor (``vector``, base64 float32) and
    what the index keeps about the file."""

    spec: DescriptorSpec
    settings: BatchSettings = BatchSettings()
    job_type: ClassVar[type] = EmbedJob

    def runner(self, host: PluginHost | None) -> "EmbedRunner":
        return EmbedRunner(self.spec, self.settings, host)

    def chunk_size(self) -> int:
        return CHUNK


class EmbedRunner(InputRunner):
    """Loads inputs as ``dreamkit run`` does (same checks, bomb guard, EXIF orientation) and
    describes them; the model loads on the first group."""

    def __init__(self, spec: DescriptorSpec, settings: BatchSettings, host: PluginHost | None) -> None:
        super().__init__(settings)
        self.spec = spec
        self.host = host
        self._describer: Describer | None = None

    def _run_group(self, group: list[tuple[EmbedJob, dict[str, Any], Any]], reraise: bool) -> None:
        try:
            if self._describer is None:
                self._describer = Describer(self.spec, self.device, self.host)
            vectors = self._describer.embed([image for _, _, image in group])
        except Exception as exc:  # noqa: BLE001 (a group again one by one: only the culprit fails)
            if len(group) == 1:
                self._fail(group[0][1], exc, reraise)
            else:
                for member in group:
                    self._run_group([member], reraise)
            return
        blankness = self._describer.blankness(vectors)
        for (job, record, image), vector, blank in zip(group, vectors, blankness):
            self._guard(record, reraise, lambda: record.update(self._facts(job.item, image, vector, float(blank))))

    def _facts(self, item: InputItem, image: Any, vector: np.ndarray, blankness: float) -> dict[str, Any]:
        stat = item.path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": self._sha256(item),
                "width": int(image.shape[-1]), "height": int(image.shape[-2]), "blankness": round(blankness, 6),
                "thumbnail": thumbnail_of(image) if blankness >= LOW_INFORMATION else None,
                "vector": base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")}


def decode_vector(record: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(record["vector"]), dtype=np.float32)


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record as printed and reported: without the descriptor or the image-output fields."""
    hidden = ("vector", "frames", "animation", "results", "seed", "blankness", "thumbnail")
    return {key: value for key, value in record.items() if key not in hidden}


@dataclass
class IndexPlan:
    """What an index build or update does: ``jobs`` to embed, ``remove`` (keys of images gone or
    changed), and the records known before any work (failed listings, ignored and unchanged files)."""

    work: EmbedWork
    jobs: list[EmbedJob] = field(default_factory=list)
    known: list[dict[str, Any]] = field(default_factory=list)
    remove: list[int] = field(default_factory=list)
    #: (path, video frame) of each job that re-describes an indexed image → that image's key.
    replacing: dict[tuple[str, int | None], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.jobs) + len(self.known)

    def single_input(self) -> bool:
        return False  # an index of one bad image is still a batch: report it, exit 1

    def video_assembler(self) -> None:
        return None  # an index writes no pictures: no videos to make of them


def plan_index(store: IndexStore, settings: BatchSettings) -> IndexPlan:
    """Compare the index's sources, listed now, with what it holds: new and changed files are
    jobs, files still as they were are ``skipped``, files gone are removed."""
    sources = store.settings["sources"]
    listing = list_inputs(sources["inputs"], recursive=sources["recursive"], list_files=sources["list_files"],
                          exclude=store.path)
    plan = IndexPlan(EmbedWork(DescriptorSpec.from_dict(store.settings["descriptor"]), settings))
    plan.known += [{**base_record(problem.source, "failed", settings.seed), "error": problem.reason}
                   for problem in listing.problems]
    plan.known += [{**base_record(path, "ignored", settings.seed), "error": "not an image or video file name"}
                   for path in listing.ignored]
    indexed = {(item.path, item.video_frame): item for item in store.items()}
    seen = set()
    for item in listing.items:
        key = (str(item.path), item.video_frame)
        seen.add(key)
        known = indexed.get(key)
        if known is not None and _unchanged(item, known):
            plan.known.append(base_record(item.path, "skipped", settings.seed, item.video_frame))
        else:
            plan.jobs.append(EmbedJob(item))
    # Changed files are replaced when their new row is written (or removed if they now fail);
    # files gone are removed now. A source that is itself gone (an unmounted drive, a renamed
    # folder) must not empty the index: its images are kept until it is back or removed for good.
    missing_roots = [root for root in map(_source_root, (p.source for p in listing.problems)) if not root.exists()]
    plan.remove = [item.key for key, item in indexed.items() if key not in seen
                   and not any(_under(Path(item.path), root) for root in missing_roots)]
    plan.replacing = {key: indexed[key].key for key in (_job_key(job) for job in plan.jobs) if key in indexed}
    return plan


def _job_key(job: EmbedJob) -> tuple[str, int | None]:
    return (str(job.item.path), job.item.video_frame)


def _source_root(source: str) -> Path:
    """The folder or file a source names (a pattern's fixed folder)."""
    import glob

    if glob.has_magic(source):
        return glob_base(source).absolute()
    return Path(source).absolute()


def _unchanged(item: InputItem, known: Any) -> bool:
    try:
        stat = item.path.stat()
    except OSError:
        return False
    return stat.st_size == known.size and stat.st_mtime_ns == known.mtime_ns


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class IndexWriter:
    """Commits ``done`` records to the index as they arrive, :data:`SHARD_ROWS` at a time, and
    the removals with the first commit. An indexed image that changed and now fails (``replacing``
    names those) is removed: its old descriptor no longer describes the file."""

    def __init__(self, index: ImageIndex, remove: Sequence[int],
                 replacing: dict[tuple[str, int | None], int] | None = None) -> None:
        self.index = index
        self.pending: list[dict[str, Any]] = []
        self.remove = list(remove)
        self.replacing = replacing or {}
        self.added: list[int] = []
        self.removed: list[int] = []
        self.start_generation = index.store.generation

    def add(self, record: dict[str, Any]) -> None:
        if record["status"] == "failed":
            key = self.replacing.get((record["input"], record["video_frame"]))
            if key is not None:
                self.remove.append(key)
        if record["status"] == "done":
            self.pending.append(record)
        if len(self.pending) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending and not self.remove:
            return
        rows = [{"path": r["input"], "video_frame": r["video_frame"], **{k: r[k] for k in
                ("size", "mtime_ns", "sha256", "width", "height", "blankness", "thumbnail")}} for r in self.pending]
        dim = self.index.spec.dim
        vectors = np.stack([decode_vector(r) for r in self.pending]) if rows else np.empty((0, dim), np.float32)
        self.added += self.index.store.write(rows, vectors, remove=self.remove)
        self.removed += self.remove
        self.pending, self.remove = [], []

    def finish(self) -> str:
        """Commit what is pending and bring the ANN graph up to date; say what was done."""
        self.flush()
        store = self.index.store
        if len(store) < self.index.ann_min_items:
            in_step = store.settings.get("ann_generation") == -1
        else:  # present, current, readable and whole (no warning: it is rebuilt right here if not)
            in_step = self.index.graph(quiet=True) is not None
        if in_step:
            if store.settings.get("ann_generation") == -1:
                return "search is exact (small index)"
            return "ANN graph up to date" + recall_words(self.index.estimate_recall())
        return self.index.sync_graph(self.added, self.removed, self.start_generation)


@dataclass
class IndexRun:
    """The outcome of :func:`run_index`: the counts, and what was done to the ANN graph."""

    summary: BatchSummary
    graph: str
    #: Images dropped from the index: files gone, or changed and now unreadable.
    removed: int = 0


def run_index(index: ImageIndex, settings: BatchSettings, engine: Engine | None = None, *,
              host: PluginHost | None = None, progress: bool | None = None,
              on_record: Any = None) -> IndexRun:
    """Embed what :func:`plan_index` finds to do and commit it; ``on_record(record)`` sees each
    record (public fields only) as it comes. Ctrl-C commits what is done, then re-raises."""
    plan = plan_index(index.store, settings)
    summary = BatchSummary(plan.total)
    writer = IndexWriter(index, plan.remove, plan.replacing)
    try:
        for record in run_batch(plan, engine or LocalEngine(), host=host, progress=progress, summary=summary):
            writer.add(record)
            if on_record is not None:
                on_record(public_record(record))
    except KeyboardInterrupt:
        summary.interrupted = True
        writer.flush()
        raise
    graph = writer.finish()
    return IndexRun(summary, graph, len(writer.removed))


def create_index(path: str | Path, spec: DescriptorSpec, inputs: Sequence[str], *, recursive: bool = False,
                 list_files: Sequence[str] = (), ann_min_items: int | None = None) -> ImageIndex:
    """A new empty index at ``path`` that will describe images as ``spec`` says and whose
    ``update`` rescans ``inputs`` (made absolute: an update may run from another folder)."""
    from .ann import ANN_MIN_ITEMS

    settings = {"descriptor": spec.to_dict(), "sources": _sources(inputs, recursive, list_files), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "ann_min_items": ANN_MIN_ITEMS if ann_min_items is None else ann_min_items}
    return ImageIndex(IndexStore.create(path, settings))


def _sources(inputs: Sequence[str], recursive: bool, list_files: Sequence[str]) -> dict[str, Any]:
    """The sources an index stores for ``update`` to rescan (absolute: it may run elsewhere)."""
    return {"inputs": [_absolute(text) for text in inputs], "recursive": recursive,
            "list_files": [_absolute(text) for text in list_files]}


def _absolute(text: str) -> str:
    if text == "-":
        raise BadIndexError("an index rescans its sources at every update, so it cannot read paths from stdin; "
                            "name folders, files or patterns, or --list FILE")
    return str(Path(text).expanduser().absolute())


def check_resumable(index: ImageIndex, spec: DescriptorSpec, inputs: Sequence[str], recursive: bool,
                    list_files: Sequence[str]) -> None:
    """A build into an existing index resumes it only if it asks for the same thing."""
    different = index.spec.mismatch(spec)
    if different:
        raise BadIndexError(f"index {index.path} was made with another descriptor ({different}); its vectors "
                            "cannot be mixed with these: choose another index path, or delete it to rebuild")
    sources = index.store.settings["sources"]
    if _sources(inputs, recursive, list_files) != sources:
        raise BadIndexError(f"index {index.path} exists with other sources ({', '.join(sources['inputs'])}"
                            f"{', recursive' if sources['recursive'] else ''}); run `dreamkit index update "
                            f"{index.path}` to refresh it, or choose another index path")


__all__ = ["EmbedJob", "EmbedWork", "EmbedRunner", "IndexPlan", "IndexRun", "IndexWriter", "check_resumable",
           "create_index", "decode_vector", "plan_index", "public_record", "run_index"]


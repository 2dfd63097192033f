"""``dreamkit index build | update | search | dupes | info``: the retrieval plugin's commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dreamkit.commands import Command
from dreamkit.errors import DreamkitError

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="index_command", required=True, metavar="ACTION", parser_class=type(parser))  # dreamkit's: errors exit 2

    build = sub.add_parser("build", help="index images (new, or resume an interrupted build)",
                           description="Describe every image of the inputs and write an index. Run again to "
                                       "resume an interrupted build.")
    build.add_argument("inputs", nargs="*", metavar="INPUT", help="image or video files, folders, glob patterns")
    build.add_argument("-o", "--output", type=Path, required=True, metavar="INDEX", help="the index folder")
    build.add_argument("-r", "--recursive", action="store_true", help="walk folders' subfolders")
    build.add_argument("--list", action="append", dest="list_files", default=[], metavar="FILE",
                       help="a file of input paths, one per line; repeatable")
    build.add_argument("--by", default="content", choices=["content", "style"],
                       help="content (what images show, default) or style (how they are painted)")
    build.add_argument("--backbone", default="mobilenet_v2", help="any backbone (dreamkit layers --list)")
    build.add_argument("--weights", default="default", help="'default', 'random' or a registered weights name")
    build.add_argument("--layer", action="append", dest="layers", metavar="LAYER",
                       help="layer to describe (content: one; style: repeat); default by backbone")
    build.add_argument("--pooling", default="avg", choices=["avg", "gem"],
                       help="content pooling: avg (default) or gem (for non-negative, post-ReLU layers)")
    build.add_argument("--ann-min", type=int, default=None, metavar="N",
                       help="build an ANN graph from N images (default 20000; below it, search is exact)")
    _add_running(build)

    update = sub.add_parser("update", help="index new and changed images, drop removed ones",
                            description="Rescan the index's inputs: describe new and changed images, drop "
                                        "those that are gone, and bring the ANN graph up to date.")
    update.add_argument("index", type=Path, metavar="INDEX")
    _add_running(update)

    search = sub.add_parser("search", help="the nearest images to query images",
                            description="Find the indexed images nearest to each query image.")
    search.add_argument("index", type=Path, metavar="INDEX")
    search.add_argument("queries", nargs="+", type=Path, metavar="QUERY", help="query image files")
    search.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    search.add_argument("--json", action="store_true", help="one JSON object per query on stdout")
    search.add_argument("--sheet", type=Path, metavar="FILE", help="also draw a contact sheet (.jpg or .png)")
    search.add_argument("--overwrite", action="store_true", help="replace an existing --sheet file")
    search.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")

    dupes = sub.add_parser("dupes", help="groups of near-duplicate images",
                           description="Group near-duplicates: images at or above a similarity to one another.")
    dupes.add_argument("index", type=Path, metavar="INDEX")
    dupes.add_argument("--threshold", type=float, default=None, metavar="T",
                       help="cosine similarity from which images are near-duplicates (default 0.6 for content "
                            "indexes: copies score 0.67+, different images 0.47-)")
    dupes.add_argument("--neighbours", type=int, default=10, metavar="N",
                       help="how many nearest images each image is compared with (default 10)")
    dupes.add_argument("--json", action="store_true", help="one JSON object per group on stdout")

    info = sub.add_parser("info", help="what an index holds and how it was made")
    info.add_argument("index", type=Path, metavar="INDEX")
    info.add_argument("--json", action="store_true")


def _add_running(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N", help="refuse larger inputs")
    parser.add_argument("--engine", default="local", choices=["local", "ray"], help="where images run (default local)")
    parser.add_argument("--workers", type=int, metavar="N", help="Ray actors")
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write a JSON-lines report: one line per input")
    parser.add_argument("--json", action="store_true", help="one JSON object per input on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    return {"build": _build, "update": _update, "search": _search, "dupes": _dupes, "info": _info}[args.index_command](args)


# -- build / update ------------------------------------------------------------------------------
def _build(args: argparse.Namespace) -> int:
    from .descriptors import make_spec
    from .index import ImageIndex
    from .indexing import check_resumable, create_index
    from .store import DATABASE

    if not args.inputs and not args.list_files:
        raise DreamkitError("no inputs: name image files, folders or patterns, or --list FILE")
    if args.ann_min is not None and args.ann_min < 0:
        raise DreamkitError(f"--ann-min {args.ann_min} is not allowed; expected 0 or more images")
    spec = make_spec(args.by, args.backbone, args.weights, args.layers, pooling=args.pooling)
    _check_running(args)
    if (args.output / DATABASE).exists():
        index = ImageIndex.open(args.output, writable=True)
        check_resumable(index, spec, args.inputs, args.recursive, args.list_files)
        print(f"dreamkit: {args.output} exists with the same descriptor and inputs: resuming", file=sys.stderr)
    else:
        index = create_index(args.output, spec, args.inputs, recursive=args.recursive, list_files=args.list_files,
                             ann_min_items=args.ann_min)
    with index:
        return _run(index, args)


def _update(args: argparse.Namespace) -> int:
    from .index import ImageIndex

    _check_running(args)
    with ImageIndex.open(args.index, writable=True) as index:
        return _run(index, args)


def _check_running(args: argparse.Namespace) -> None:
    from dreamkit.batch import make_engine
    from dreamkit.commands import require_positive
    from dreamkit.context import resolve_device

    require_positive(args.max_pixels, "--max-pixels")  # --workers: make_engine checks it
    args.engine_object = make_engine(args.engine, workers=args.workers, address=args.ray_address)
    if args.engine == "local":
        resolve_device(args.device)


def _run(index: Any, args: argparse.Namespace) -> int:
    from dreamkit.batch import BatchSettings, ReportWriter
    from dreamkit.batch.run import record_label

    from .indexing import run_index

    if args.report:
        from dreamkit.io import check_output_path

        check_output_path(args.report, overwrite=True)
    report = ReportWriter(args.report) if args.report else None
    stdout = sys.stdout

    def show(record: dict[str, Any]) -> None:
        if report:
            report.write(record)
        if args.json:
            print(json.dumps(record, default=str), file=stdout, flush=True)
        elif record["status"] == "failed":
            where = record_label(record)
            error = record["error"] if where in record["error"] else f"{where}: {record['error']}"
            print(f"dreamkit: failed: {error}", file=sys.stderr)

    settings = BatchSettings(device=args.device, max_pixels=args.max_pixels)
    try:
        outcome = run_index(index, settings, args.engine_object, progress=False if args.quiet else None, on_record=show)
    except KeyboardInterrupt:
        print(f"dreamkit: interrupted; what was described is saved in {index.path} (run the same command again "
              "to finish)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if report:
            report.close()
    removed = f"; {outcome.removed} removed" if outcome.removed else ""
    print(f"dreamkit: {index.path}: {outcome.summary.describe()}{removed}; {len(index)} images indexed; "
          f"{outcome.graph}", file=sys.stderr)
    return EXIT_FAILED if outcome.summary.failed else EXIT_OK


# -- search ------------------------------------------------------------------------------------
def _search(args: argparse.Namespace) -> int:
    from dreamkit.context import resolve_device
    from dreamkit.io import check_output_path, load_image

    from .index import ImageIndex

    if args.k < 1:
        raise DreamkitError(f"-k {args.k} is not allowed; expected a positive integer")
    device = resolve_device(args.device)
    with ImageIndex.open(args.index) as index:
        if args.sheet:
            _check_sheet(args.sheet)
            check_output_path(args.sheet, overwrite=args.overwrite, inputs=list(args.queries))
        images = [load_image(query) for query in args.queries]  # every query checked before any output
        results = index.search_images(images, args.k, device=str(device))
        for query, hits in zip(args.queries, results):
            if args.json:
                print(json.dumps({"query": str(query), "by": index.spec.kind,
                                  "hits": [hit.as_dict() for hit in hits]}))
            else:
                print(f"{query}  ({index.spec.kind})")
                for rank, hit in enumerate(hits, 1):
                    print(f"  {rank:>3}. {hit.score:.3f}  {hit.item.label()}")
        if args.sheet:
            _write_sheet(args.sheet, args.queries, images, results)
            print(f"dreamkit: contact sheet: {args.sheet}", file=sys.stderr)
    return EXIT_OK


def _check_sheet(path: Path) -> None:
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise DreamkitError(f"--sheet {path}: unknown extension {path.suffix!r}; use .jpg or .png")


def _write_sheet(path: Path, queries: list[Path], images: list[Any], results: list[list[Any]]) -> None:
    import io

    from dreamkit.io import atomic_write_bytes, tensor_to_pil

    from .sheet import contact_sheet, thumbnail_source

    rows = []
    for query, image, hits in zip(queries, images, results):
        row = [(thumbnail_source(hit.item.path, hit.item.video_frame), Path(hit.item.path).name
                + (f"#{hit.item.video_frame}" if hit.item.video_frame is not None else ""), hit.score) for hit in hits]
        rows.append((tensor_to_pil(image), query.name, row))
    buffer = io.BytesIO()
    sheet = contact_sheet(rows)
    if path.suffix.lower() == ".png":
        sheet.save(buffer, "PNG", optimize=True)
    else:
        sheet.save(buffer, "JPEG", quality=90)
    atomic_write_bytes(path, buffer.getvalue())


# -- dupes / info --------------------------------------------------------------------------------
def _dupes(args: argparse.Namespace) -> int:
    from .index import DUPES_THRESHOLD, ImageIndex

    if args.neighbours < 1:
        raise DreamkitError(f"--neighbours {args.neighbours} is not allowed; expected a positive integer")
    with ImageIndex.open(args.index) as index:
        threshold = args.threshold if args.threshold is not None else DUPES_THRESHOLD
        if not -1 <= threshold <= 1:
            raise DreamkitError(f"--threshold {threshold} is not allowed; expected a cosine similarity from -1 to 1")
        if index.spec.kind != "content" and args.threshold is None:
            raise DreamkitError(f"index {index.path} describes {index.spec.kind}, not content: the default threshold "
                                "is for content indexes; give --threshold")
        groups = index.dupes(threshold, args.neighbours)
        for number, group in enumerate(groups, 1):
            if args.json:
                print(json.dumps({"group": number, "images": [hit.as_dict() for hit in group]}))
            else:
                print(f"group {number} ({len(group)} images)")
                for hit in group:
                    print(f"  {hit.score:.3f}  {hit.item.label()}  {hit.item.width}x{hit.item.height}")
        print(f"dreamkit: {len(groups)} groups of near-duplicates among {len(index)} images (threshold {threshold})",
              file=sys.stderr)
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from . import index as index_module
    from .index import ImageIndex

    with ImageIndex.open(args.index) as index:
        settings = index.store.settings
        recall = index.estimate_recall()
        if recall is not None:
            graph = f"ANN graph (usearch, f16), estimated recall@10 {recall:.3f}"
        elif index.graph_problem:
            graph = f"exact search: the ANN graph {index.graph_problem} (run update)"
        else:
            graph = "exact search"
        facts = {"index": str(index.path), "images": len(index), "descriptor": index.spec.to_dict(),
                 "sources": settings["sources"], "search": graph, "estimated_recall": recall,
                 "created": settings.get("created")}
        if args.json:
            print(json.dumps(facts))
        else:
            print(f"{index.path}: {len(index)} images; {index.spec.describe()}; {graph}")
            print(f"  sources: {', '.join(settings['sources']['inputs'] + settings['sources']['list_files'])}"
                  f"{' (recursive)' if settings['sources']['recursive'] else ''}")
        floor = index_module.RECALL_FLOOR
        if recall is not None and recall < floor:
            print(f"dreamkit: warning: estimated recall@10 {recall:.3f} is below {floor}: {index_module.RECALL_WARNING}",
                  file=sys.stderr)
    return EXIT_OK


COMMAND = Command("index", "index images and search them by content or style; find near-duplicates",
                  configure, run)

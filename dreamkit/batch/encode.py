"""Videos out: when every frame of a video input is done, its output frames are encoded into
one video beside them (``out/clip/frame_*.png`` → ``out/clip.mp4``): H.264 through PyAV at the
source's frame rate, the source's audio stream copied as it is (no re-encoding).

The PNG frames are the run's working state: each carries its recipe and frame index, so an
interrupted video restarts at its first missing frame, and the video is made when the last one is
done. Once it is made they are removed unless ``--frames`` asked to keep them: the video carries
the recipe and every frame's results in its metadata, so a rerun finds its frames done in it. A
video any of whose frames failed is not made (its frames are there, the failure is in the records).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DreamkitError, OutputError
from ..io import atomic_write
from .video import stream_rate

log = logging.getLogger("dreamkit.batch")

#: x264's constant rate factor: 0 lossless, 51 worst; 18 is visually lossless for most footage.
DEFAULT_CRF = 18
VIDEO_SUFFIX = ".mp4"
#: The MP4 tag that carries a made video's recipe and its frames' results (``{"dreamkit": ...}``).
METADATA_TAG = "comment"


def video_of(frames_folder: Path) -> Path:
    """The video made from a video input's frames folder: its name plus .mp4, beside it
    (``out/clip/`` → ``out/clip.mp4``; ``clip.mkv/`` of a name clash → ``clip.mkv.mp4``)."""
    return frames_folder.parent / (frames_folder.name + VIDEO_SUFFIX)


def read_video_metadata(path: Path) -> dict[str, Any] | None:
    """What :func:`encode_video` recorded in ``path`` (``{"recipe": the first frame's recipe,
    "frames": {frame index: results}}``); ``None`` for a file without it or one PyAV cannot read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_video_metadata(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)  # planning asks once per frame: read each video once
def _read_video_metadata(path: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
    import av

    try:
        with av.open(path) as container:
            text = container.metadata.get(METADATA_TAG)
        metadata = json.loads(text)["dreamkit"] if text else None
    except (av.FFmpegError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("recipe"), dict) \
            or not isinstance(metadata.get("frames"), dict):
        return None
    return metadata


def encode_video(frames: list[Path], source: Path, target: Path, *, crf: int = DEFAULT_CRF,
                 overwrite: bool = False, first_frame: int = 0,
                 metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Encode the image files ``frames`` (in order, all one size) into ``target`` (H.264 in MP4),
    at ``source``'s frame rate with ``source``'s first audio stream copied: the part that plays
    with these frames when they are the source's frames from ``first_frame`` on; ``metadata``
    (JSON) goes in its :data:`METADATA_TAG`. Written to a temporary file and moved into place:
    ``target`` is never half a video. Returns what was made."""
    import av
    from PIL import Image

    if not frames:
        raise DreamkitError(f"{target}: no frames to encode")
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists already; pass --overwrite to replace it")
    with av.open(str(source)) as original:
        stream = original.streams.video[0]
        rate = stream_rate(stream)
        audio = original.streams.audio[0] if original.streams.audio else None
        sound = 0  # audio packets copied

        def write(temporary: Path) -> None:
            nonlocal sound
            with av.open(str(temporary), "w", format="mp4") as output:
                if metadata is not None:
                    output.metadata[METADATA_TAG] = json.dumps({"dreamkit": metadata})
                first = np.asarray(Image.open(frames[0]).convert("RGB"))
                video = output.add_stream("libx264", rate=rate, options={"crf": str(crf)})
                # 4:2:0 chroma needs even sides: an odd one gets its last row or column repeated.
                video.height, video.width = first.shape[0] + first.shape[0] % 2, first.shape[1] + first.shape[1] % 2
                video.pix_fmt = "yuv420p"
                copied = output.add_stream_from_template(audio) if audio is not None else None
                for path in frames:
                    picture = np.asarray(Image.open(path).convert("RGB"))
                    if picture.shape[:2] != first.shape[:2]:
                        raise DreamkitError(f"{path}: {picture.shape[1]}x{picture.shape[0]} is not the size of the "
                                            f"first frame ({first.shape[1]}x{first.shape[0]})")
                    picture = np.pad(picture, ((0, video.height - picture.shape[0]), (0, video.width - picture.shape[1]),
                                               (0, 0)), mode="edge")
                    for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                        output.mux(packet)
                for packet in video.encode():
                    output.mux(packet)
                if copied is not None:
                    begin, end = first_frame / rate, (first_frame + len(frames)) / rate  # seconds (Fractions)
                    whole = first_frame == 0
                    for packet in original.demux(audio):
                        if packet.dts is None or packet.pts is None:  # the demuxer's flush packet
                            continue
                        if not whole:  # the frames' part only, moved to start at 0
                            at = packet.pts * audio.time_base
                            if not begin <= at < end:
                                continue
                            shift = int(begin / audio.time_base)
                            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                        packet.stream = copied
                        output.mux(packet)
                        sound += 1

        atomic_write(target, write)
    return {"video": str(target), "frames": len(frames), "fps": float(rate), "audio": sound > 0}


@dataclass
class VideoAssembler:
    """Collects a batch's records; :meth:`finish` encodes each video input all of whose frames are
    done (``done`` or ``skipped``) from its frames, into :func:`video_of` their folder, and then
    removes the frames unless ``keep_frames``."""

    crf: int = DEFAULT_CRF
    keep_frames: bool = False
    #: per video input: frame index -> (status, output, results)
    _frames: dict[str, dict[int, tuple[str, str | None, Any]]] = field(default_factory=dict)
    _expected: dict[str, int] = field(default_factory=dict)
    _sequences: set[str] = field(default_factory=set)  # videos each of whose frames made several

    def expect(self, plan: Any) -> None:
        """Count each video's frames in ``plan`` (its jobs and the records it already knows)."""
        for job in plan.jobs:
            if job.item.video_frame is not None:
                self._expected[str(job.item.path)] = self._expected.get(str(job.item.path), 0) + 1
        for record in plan.known:
            if record.get("video_frame") is not None:
                self._expected[record["input"]] = self._expected.get(record["input"], 0) + 1

    def add(self, record: dict[str, Any]) -> None:
        if record.get("video_frame") is None:
            return
        frames = record.get("frames") or [{}]
        if len(frames) > 1:
            self._sequences.add(record["input"])
        self._frames.setdefault(record["input"], {})[record["video_frame"]] = (
            record["status"], frames[0].get("output"), frames[0].get("results") or [])

    def finish(self) -> list[dict[str, Any]]:
        """Encode every complete video; returns what each made (a video that cannot be made is
        logged, not raised: its frames are the batch's results)."""
        made = []
        for source, frames in self._frames.items():
            if source in self._sequences:
                log.info("%s: each frame made a sequence of its own (its folder and GIF); no video is made", source)
                continue
            ordered = [frames[index] for index in sorted(frames)]
            complete = len(frames) == self._expected.get(source, len(frames)) and all(
                status in ("done", "skipped") and output for status, output, _ in ordered)
            if not complete:
                log.warning("%s: not every frame is done; the video is not made (run again to finish)", source)
                continue
            if any(Path(output).suffix == VIDEO_SUFFIX for _, output, _ in ordered):
                continue  # found done in the video an earlier run made, which the planner saw holds every frame
            paths = [Path(output) for _, output, _ in ordered]
            target = video_of(paths[0].parent)
            if target.exists() and target.stat().st_mtime >= max(p.stat().st_mtime for p in paths):
                continue  # made by an earlier run from these very frames (kept with --frames)
            try:
                made.append(encode_video(paths, Path(source), target, crf=self.crf, overwrite=True,
                                         first_frame=min(frames), metadata=self._metadata(paths[0], frames)))
            except (DreamkitError, OSError) as exc:
                log.error("%s: the video could not be made: %s", target, exc)
                continue
            if not self.keep_frames:
                _remove_frames(paths)
        return made

    @staticmethod
    def _metadata(first: Path, frames: dict[int, tuple[str, str | None, Any]]) -> dict[str, Any]:
        """The first frame's recipe and every frame's results: what a rerun needs to find the
        frames done in the video."""
        from ..io import RECIPE_KEY, read_metadata

        recipe = dict(read_metadata(first)[RECIPE_KEY])
        recipe["input"] = {k: v for k, v in (recipe.get("input") or {}).items() if k != "video_frame"}
        return {"recipe": recipe, "frames": {str(index): results for index, (_, _, results) in frames.items()}}


def _remove_frames(paths: list[Path]) -> None:
    """Remove a made video's PNG frames, and their folder once it is empty (it may hold more)."""
    for path in paths:
        path.unlink(missing_ok=True)
    try:
        paths[0].parent.rmdir()
    except OSError:
        pass  # something else is in there (the user's files, a --save-every folder): leave it

"""Video files as inputs: one image per frame, decoded with PyAV (the extra ``dreamkit[video]``).

Frames are decoded in order and one at a time, never the whole video at once. A
:class:`FrameReader` keeps the file open between consecutive frames, so a batch that walks a
video's frames in order decodes each frame once.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import DreamkitError, ImageLoadError

#: Frames a chunk of a long video runs before its own first frame (not written): enough for the
#: temporal terms to settle, so consecutive chunks meet without a jump.
WARM_UP = 8
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise DreamkitError("video inputs need PyAV: pip install 'dreamkit[video]'") from None
    return av


@dataclass(frozen=True)
class FrameCount:
    """A video's frames: ``readable`` (their packets are in the file) and ``declared`` (what its
    header promises: the frame count, else the video stream's duration at its rate; ``None`` when
    it does not say). Fewer readable than declared: the file was cut short or damaged."""

    readable: int
    declared: int | None

    @property
    def truncated(self) -> bool:
        return self.declared is not None and self.readable < self.declared - 1  # a frame of rounding


def count_frames(path: Path) -> FrameCount:
    """How many video frames ``path`` holds (counted from its packets: nothing is decoded), and
    how many its header declares."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageLoadError(f"{path}: no video stream in this file")
            stream = container.streams.video[0]
            declared = _declared_frames(container, stream)
            count = sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as exc:
        raise ImageLoadError(f"{path}: cannot read the video: {exc}") from None
    if count == 0:
        raise ImageLoadError(f"{path}: the video holds no frames")
    return FrameCount(count, declared)


def _declared_frames(container: Any, stream: Any) -> int | None:
    """The frames ``stream``'s header promises: its frame count (MP4), else its own duration
    (the stream's, or Matroska's DURATION tag) at its rate; the container's duration only when the
    video is its one stream (with audio it may be the audio's length)."""
    if stream.frames:
        return int(stream.frames)
    seconds: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif stream.metadata.get("DURATION"):
        hours, minutes, rest = stream.metadata["DURATION"].split(":")
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(rest)
    elif len(container.streams) == 1 and container.duration:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    return round(seconds * float(stream_rate(stream))) if seconds else None


def stream_rate(stream: Any) -> Fraction:
    """Frames per second of an open PyAV video stream, exact: its average rate, else the rate
    FFmpeg guesses, else 25 (a stream that says nothing)."""
    return Fraction(stream.average_rate or stream.guessed_rate or 25)


def video_rate(path: Path) -> Fraction:
    """Frames per second of ``path``'s first video stream (:func:`stream_rate`)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            return stream_rate(container.streams.video[0])
    except (av.FFmpegError, IndexError) as exc:
        raise ImageLoadError(f"{path}: cannot read the video: {exc}") from None


@dataclass(frozen=True)
class FrameRange:
    """Which part of each video to run: from ``start`` seconds, for ``duration`` seconds (None:
    to the end). Frames are chosen by time at the video's own rate."""

    start: float = 0.0
    duration: float | None = None
    #: Frames per chunk of a long video (0: the whole range is one sequence). Chunks run apart
    #: (on Ray, in parallel); each starts its sequence ``WARM_UP`` frames before its first frame,
    #: which it runs but does not write, so no chunk starts cold.
    chunk: int = 0

    def sequence_start(self, index: int, first: int) -> int:
        """Where the sequence that writes frame ``index`` starts (``first``: the range's first frame)."""
        if not self.chunk:
            return first
        begins = first + (index - first) // self.chunk * self.chunk
        return max(first, begins - WARM_UP)

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.duration is None

    def indices(self, path: Path, count: int) -> range:
        """The frame indices of ``path`` (``count`` frames) in this range; an empty range is an
        :class:`~dreamkit.errors.ImageLoadError` naming the video's length."""
        if self.whole:
            return range(count)
        rate = float(video_rate(path))
        first = round(self.start * rate)
        stop = count if self.duration is None else min(count, first + max(1, round(self.duration * rate)))
        if first >= count:
            raise ImageLoadError(f"{path}: --start {self.start:g} s is past the end of the video "
                                 f"({count} frames at {rate:g} fps: {count / rate:.2f} s)")
        return range(first, stop)


class FrameReader:
    """Decode frame N of a video as a 1×3×H×W float32 tensor in 0..1, reading forward from the
    last frame asked for (asking for an earlier frame reopens the file)."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._frames: Iterator[Any] | None = None
        self._container: Any = None
        self._next = 0

    def read(self, path: Path, index: int, max_pixels: int) -> torch.Tensor:
        av = _av()
        if self._path != path or index < self._next:
            self.close()
            try:
                self._container = av.open(str(path))
                self._frames = self._container.decode(video=0)
            except av.FFmpegError as exc:
                raise ImageLoadError(f"{path}: cannot read the video: {exc}") from None
            self._path, self._next = path, 0
        try:
            while True:
                frame = next(self._frames)
                self._next += 1
                if self._next - 1 == index:
                    break
        except StopIteration:
            self.close()
            raise ImageLoadError(f"{path}: frame {index} is past the end of the video") from None
        except av.FFmpegError as exc:
            self.close()
            raise ImageLoadError(f"{path}: cannot decode frame {index} (truncated or corrupt?): {exc}") from None
        if frame.width * frame.height > max_pixels:
            raise ImageLoadError(f"{path}: frame of {frame.width}×{frame.height} pixels is over the limit of {max_pixels:,}")
        array = frame.to_ndarray(format="rgb24")
        return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._frames = self._path = None
        self._next = 0

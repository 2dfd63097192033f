"""Progress bars: what an effect may ask of one, and the front ends' implementations of it.

An effect asks its context for a bar (``with context.progress(total, "style") as bar``) and uses
only what :class:`ProgressBar` declares. Every front end's bars implement all of it: the
terminal's (tqdm on stderr), the silent one (tests, ``--quiet``, batch workers), the web page's
(events to the browser) and any a plugin brings. So an effect that runs in one front end runs in
all of them; ``tests/test_progress.py`` runs every registered effect with each.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    import torch

    #: What :meth:`ProgressBar.preview` takes: an image, or a function that makes it when shown.
    Preview = Union[torch.Tensor, Callable[[], torch.Tensor]]


@runtime_checkable
class ProgressBar(Protocol):
    """One bar: ``total`` units of work, advanced by :meth:`update`."""

    def update(self, count: int = 1) -> None:
        """``count`` more units are done."""

    def show(self, **values: Any) -> None:
        """The latest figures worth showing beside the bar (``style=0.12, content=3.4``): numbers
        or short strings. They replace the ones shown before."""

    def preview(self, image: "Preview") -> None:
        """The work so far as an image a front end may show while it goes on (the web page does,
        small, at most about once a second; the terminal and silent bars ignore it). ``image`` is
        a 1×3×H×W tensor in 0..1 on any device, or a function returning one, called only when
        the image will be shown (so an effect may offer every iteration for free)."""


class Progress(ABC):
    """Where a run's bars go. :meth:`bar` opens one bar; front ends subclass this."""

    @abstractmethod
    def bar(self, total: int, desc: str) -> ContextManager[ProgressBar]:
        """A context manager yielding a :class:`ProgressBar` of ``total`` units named ``desc``."""


class _SilentBar:
    def update(self, count: int = 1) -> None:
        pass

    def show(self, **values: Any) -> None:
        pass

    def preview(self, image: "Preview") -> None:
        pass


class SilentProgress(Progress):
    """Bars that show nothing (tests, ``--quiet``, pipelines run from Python by default)."""

    @contextmanager
    def bar(self, total: int, desc: str) -> Iterator[ProgressBar]:
        yield _SilentBar()


class _TerminalBar:
    def __init__(self, tqdm_bar: Any) -> None:
        self._bar = tqdm_bar

    def update(self, count: int = 1) -> None:
        self._bar.update(count)

    def show(self, **values: Any) -> None:
        self._bar.set_postfix({key: _short(value) for key, value in values.items()}, refresh=False)

    def preview(self, image: "Preview") -> None:
        pass  # a terminal shows no pictures


class TerminalProgress(Progress):
    """tqdm bars on ``stream`` (stderr), which vanish when done."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr

    @contextmanager
    def bar(self, total: int, desc: str) -> Iterator[ProgressBar]:
        from tqdm import tqdm

        with tqdm(total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True) as bar:
            yield _TerminalBar(bar)


def make_progress(setting: "bool | None | Progress", stream: Any = None) -> Progress:
    """A :class:`Progress` as given, or from a setting: ``True`` terminal bars, ``False`` silent,
    ``None`` terminal bars when ``stream`` (stderr) is a terminal."""
    if isinstance(setting, Progress):
        return setting
    if setting is None:
        target = stream if stream is not None else sys.stderr
        setting = bool(getattr(target, "isatty", lambda: False)())
    return TerminalProgress(stream) if setting else SilentProgress()


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


__all__ = ["Progress", "ProgressBar", "SilentProgress", "TerminalProgress", "make_progress"]

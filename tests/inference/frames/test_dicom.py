"""DICOM series as frames: slice order, windowing to 8 bits, the bounded cache, and the files refused.

Every series is written here with pydicom (no data files)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, generate_uid

from masklog.inference.frames.dicom import DicomSeriesFrames, probe_dicom_series
from masklog.inference.frames.errors import FrameError
from masklog.inference.protocols import FrameSource

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # normal: (0, 1, 0)


def dicom_slice(
    pixels: np.ndarray | None,
    *,
    position: Sequence[float] | None = None,
    orientation: Sequence[float] | None = AXIAL,
    instance: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[Any, Any] | None = None,
    photometric: str = "MONOCHROME2",
) -> FileDataset:
    """A single-frame CT slice, 16 bits a pixel (signed when `pixels` is), Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("slice.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    if pixels is not None:
        signed = np.issubdtype(pixels.dtype, np.signedinteger)
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if instance is not None:
        ds.InstanceNumber = instance
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    return ds


def write_dicom(path: Path, ds: FileDataset) -> Path:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def disc_slice(index: int, size: tuple[int, int] = (64, 48), radius: int = 8) -> np.ndarray:
    """Stored values of slice `index` of a moving disc: CT-like numbers (air -1000, disc +600)
    once rescaled with slope 1 and intercept -1024."""
    width, height = size
    yy, xx = np.mgrid[:height, :width]
    cx, cy = 12 + 5 * index, height // 2
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    return np.where(inside, 1624, 24).astype(np.int16)


def write_disc_series(folder: Path, frames: int = 8, size: tuple[int, int] = (64, 48), seed: int = 1) -> tuple[list[Path], list[int]]:
    """A series of a bright disc moving right, one file a slice, written in a shuffled order under
    names that say nothing. The orientation's normal is -z, so z falls as the slice index rises,
    and the InstanceNumbers disagree with the positions: only the position projected on the normal
    gives the slice order. Returns the files (in the shuffled order) and the slice index of each."""
    folder.mkdir(parents=True, exist_ok=True)
    shuffled = [int(i) for i in np.random.default_rng(seed).permutation(frames)]
    paths = []
    for order, index in enumerate(shuffled):
        ds = dicom_slice(
            disc_slice(index, size), position=(-100.0, -80.0, 50.0 - 2.5 * index), orientation=(1, 0, 0, 0, -1, 0),
            instance=index + 1 if index % 2 else frames - index, slope=1, intercept=-1024, window=(200, 1600),
        )  # fmt: skip
        paths.append(write_dicom(folder / f"IM{order:04d}", ds))
    return paths, shuffled


def grey(frame: np.ndarray) -> np.ndarray:
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert (frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all(), "grey replicated to RGB"
    return frame[..., 0]


# ---- order -------------------------------------------------------------------------------------------


def test_slices_ordered_by_position_on_the_normal_not_by_file_order_or_instance_number(tmp_path):
    # Coronal slices: the normal is +y. x and z drift the other way and InstanceNumbers disagree,
    # so only the projection on the normal gives the order 0..5.
    truth = [4, 0, 5, 2, 1, 3]
    paths = []
    for order, index in enumerate(truth):
        ds = dicom_slice(
            np.full((8, 10), 100 + 10 * index, np.uint16), position=(30.0 - index, 2.0 * index - 40, 7.0 - 3 * index),
            orientation=CORONAL, instance=10 - index if index != 2 else 99,
        )  # fmt: skip
        paths.append(write_dicom(tmp_path / f"{order}.dcm", ds))
    frames = DicomSeriesFrames(paths)
    assert frames.paths == [paths[truth.index(i)] for i in range(6)]
    assert list(probe_dicom_series(paths).order) == [truth.index(i) for i in range(6)]
    means = [float(grey(frames.get(i)).mean()) for i in range(len(frames))]
    assert means == sorted(means) and len(set(means)) == 6


def test_instance_number_without_positions_then_the_order_given(tmp_path):
    instances = [3, 1, 2]
    paths = [write_dicom(tmp_path / f"{i}.dcm", dicom_slice(np.full((4, 4), 10 * n, np.uint16), instance=n)) for i, n in enumerate(instances)]
    assert list(probe_dicom_series(paths).order) == [1, 2, 0]
    assert DicomSeriesFrames(paths).paths == [paths[1], paths[2], paths[0]]
    # One slice without a position: positions are not used; without every InstanceNumber either,
    # the files keep the order given.
    mixed = [
        write_dicom(tmp_path / "a.dcm", dicom_slice(np.zeros((4, 4), np.uint16), position=(0, 0, 5), instance=2)),
        write_dicom(tmp_path / "b.dcm", dicom_slice(np.zeros((4, 4), np.uint16), instance=1)),
    ]
    assert list(probe_dicom_series(mixed).order) == [1, 0]
    bare = [write_dicom(tmp_path / f"bare{i}.dcm", dicom_slice(np.zeros((4, 4), np.uint16), orientation=None)) for i in range(3)]
    assert list(probe_dicom_series(bare).order) == [0, 1, 2]


def test_sort_false_takes_the_files_as_given(tmp_path):
    paths, _ = write_disc_series(tmp_path, frames=4)
    frames = DicomSeriesFrames(paths, sort=False)
    assert frames.paths == paths
    assert isinstance(frames, FrameSource) and (frames.width, frames.height, len(frames)) == (64, 48, 4)


# ---- windowing -----------------------------------------------------------------------------------------


def dicom_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM's linear VOI function (PS3.3 C.11.2.1.2), written out for 8-bit output."""
    out = np.empty(values.shape)
    low, high = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    out[values <= low] = 0
    out[values > high] = 255
    middle = (values > low) & (values <= high)
    out[middle] = ((values[middle] - (centre - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(out)


def test_rescale_then_the_first_window(tmp_path):
    stored = np.arange(-600, 1400, 10, dtype=np.int16).reshape(10, 20)  # signed stored values
    hounsfield = stored.astype(float) * 2 - 1024
    ds = dicom_slice(stored, slope=2, intercept=-1024, window=([40, 400], [400, 2000]))
    frame = grey(DicomSeriesFrames([write_dicom(tmp_path / "ct.dcm", ds)]).get(0))
    expected = dicom_window(hounsfield, 40, 400)
    assert np.abs(frame.astype(int) - expected).max() <= 1
    assert frame.min() == 0 and frame.max() == 255 and ((frame > 0) & (frame < 255)).sum() >= 15, "clipped on both sides, graded between"


def test_monochrome1_is_inverted(tmp_path):
    stored = np.arange(0, 200, dtype=np.uint16).reshape(10, 20)
    normal = write_dicom(tmp_path / "m2.dcm", dicom_slice(stored, window=(100, 101)))
    inverted = write_dicom(tmp_path / "m1.dcm", dicom_slice(stored, window=(100, 101), photometric="MONOCHROME1"))
    m2 = grey(DicomSeriesFrames([normal]).get(0)).astype(int)
    m1 = grey(DicomSeriesFrames([inverted]).get(0)).astype(int)
    assert (m1 == 255 - m2).all() and m1[0, 0] == 255 and m1[-1, -1] == 0


def test_without_a_window_the_series_robust_range(tmp_path):
    # 1990 values spread over 0..995 and ten hot pixels: a plain min/max would leave the ramp
    # black; the 99.5th percentile is the ramp's top.
    ramp = np.repeat(np.arange(0, 1000, 5), 10)[:1990]
    values = np.concatenate([ramp, np.full(10, 60000)]).astype(np.uint16).reshape(40, 50)
    first = write_dicom(tmp_path / "0.dcm", dicom_slice(values, instance=1))
    flat = write_dicom(tmp_path / "1.dcm", dicom_slice(np.full((40, 50), 500, np.uint16), instance=2))
    frames = DicomSeriesFrames([first, flat])
    image = grey(frames.get(0))
    assert image[0, 0] == 0 and image[-1, -1] == 255
    middle = image.ravel()[np.argmin(np.abs(ramp - 500))]
    assert abs(int(middle) - 128) <= 3
    # One range for the whole series: the flat slice is not stretched on its own.
    assert abs(int(grey(frames.get(1)).mean()) - 128) <= 3


def test_rle_lossless_decodes_like_uncompressed(tmp_path):
    pixels = disc_slice(3)
    plain = write_dicom(tmp_path / "plain.dcm", dicom_slice(pixels, slope=1, intercept=-1024, window=(200, 1600)))
    ds = dicom_slice(pixels, slope=1, intercept=-1024, window=(200, 1600))
    ds.compress(RLELossless)
    rle = write_dicom(tmp_path / "rle.dcm", ds)
    assert (DicomSeriesFrames([rle]).get(0) == DicomSeriesFrames([plain]).get(0)).all()


# ---- decoding on demand ------------------------------------------------------------------------------


def test_bounded_cache_read_only_frames_and_threads(tmp_path):
    paths, _ = write_disc_series(tmp_path, frames=8)
    frames = DicomSeriesFrames(paths, cache_frames=3)
    assert frames.cached_frames == 1, "opening decodes the first slice only"
    walked = [frames.get(i).copy() for i in range(len(frames))]
    assert frames.cached_frames == 3
    with pytest.raises(ValueError):
        frames.get(0)[0, 0, 0] = 1
    # The disc moves right from slice to slice, in position order.
    xs = [float(np.nonzero(grey(f) > 128)[1].mean()) for f in walked]
    assert all(b > a for a, b in itertools.pairwise(xs)), xs
    with ThreadPoolExecutor(4) as pool:
        again = list(pool.map(frames.get, [i % 8 for i in range(40)]))
    assert all((a == walked[i % 8]).all() for i, a in enumerate(again))
    with pytest.raises(FrameError, match="out of range"):
        frames.get(8)


# ---- refused -------------------------------------------------------------------------------------------


def test_probe_reports_size_and_count(tmp_path):
    paths, shuffled = write_disc_series(tmp_path, frames=5)
    info = probe_dicom_series(paths)
    assert (info.width, info.height, info.frames) == (64, 48, 5)
    assert [shuffled[i] for i in info.order] == [0, 1, 2, 3, 4]


def test_not_dicom(tmp_path):
    text = tmp_path / "notes.dcm"
    text.write_bytes(b"this is not a DICOM file\n" * 20)
    with pytest.raises(FrameError, match=r"^notes\.dcm is not a DICOM file \(it lacks the DICOM file header"):
        probe_dicom_series([text], ["notes.dcm"])
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(FrameError, match="empty.dcm is not a"):
        probe_dicom_series([empty], ["empty.dcm"])
    good = write_dicom(tmp_path / "good.dcm", dicom_slice(np.zeros((4, 4), np.uint16)))
    with pytest.raises(FrameError, match="not a DICOM file"):
        DicomSeriesFrames([good, text])  # sorting reads every header


def test_mixed_sizes_name_the_file_and_both_sizes(tmp_path):
    a = write_dicom(tmp_path / "a.dcm", dicom_slice(np.zeros((48, 64), np.uint16)))
    b = write_dicom(tmp_path / "b.dcm", dicom_slice(np.zeros((32, 40), np.uint16)))
    with pytest.raises(FrameError) as error:
        probe_dicom_series([a, b], ["a.dcm", "b.dcm"])
    assert str(error.value) == "b.dcm is 40x32, a.dcm is 64x48: all slices of a series must have one size"


def test_no_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "report.dcm", dicom_slice(None))
    with pytest.raises(FrameError) as error:
        probe_dicom_series([path], ["report.dcm"])
    assert str(error.value) == "report.dcm holds no pixel data"
    index = dicom_slice(None)
    index.file_meta.MediaStorageSOPClassUID = index.SOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
    with pytest.raises(FrameError, match=r"^DICOMDIR is a DICOMDIR \(an index of files, no image\): upload the image files only$"):
        probe_dicom_series([write_dicom(tmp_path / "DICOMDIR", index)], ["DICOMDIR"])


def test_compressed_syntax_without_a_decoder(tmp_path):
    ds = dicom_slice(np.zeros((8, 8), np.uint16))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    path = write_dicom(tmp_path / "jpeg.dcm", ds)
    with pytest.raises(FrameError) as error:
        probe_dicom_series([path], ["jpeg.dcm"])
    assert str(error.value) == (
        "jpeg.dcm is compressed as JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50), which needs decoders this server "
        "does not have: send the series uncompressed (e.g. Explicit VR Little Endian) or as RLE Lossless"
    )


def test_multi_frame_colour_and_truncated_pixels(tmp_path):
    multi = dicom_slice(np.zeros((8, 8), np.uint16))
    multi.NumberOfFrames = 3
    multi.PixelData = np.zeros((3, 8, 8), "<u2").tobytes()
    with pytest.raises(FrameError, match=r"^multi\.dcm is a multi-frame file \(3 frames\)"):
        probe_dicom_series([write_dicom(tmp_path / "multi.dcm", multi)], ["multi.dcm"])

    colour = dicom_slice(np.zeros((8, 8), np.uint16))
    colour.SamplesPerPixel, colour.PhotometricInterpretation, colour.PlanarConfiguration = 3, "RGB", 0
    colour.BitsAllocated, colour.BitsStored, colour.HighBit = 8, 8, 7
    colour.PixelData = np.zeros((8, 8, 3), np.uint8).tobytes()
    with pytest.raises(FrameError, match=r"^colour\.dcm holds colour pixel data \(RGB, 3 samples a pixel\)"):
        probe_dicom_series([write_dicom(tmp_path / "colour.dcm", colour)], ["colour.dcm"])

    short = dicom_slice(np.zeros((8, 8), np.uint16))
    short.PixelData = short.PixelData[:40]
    with pytest.raises(FrameError, match=r"^short\.dcm: its pixel data cannot be decoded"):
        probe_dicom_series([write_dicom(tmp_path / "short.dcm", short)], ["short.dcm"])

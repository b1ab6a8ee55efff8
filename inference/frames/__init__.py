"""Frame sources: random access to the frames of one media item, by source kind.

- `inference.frames.video`: video files (PyAV), indexed once, decoded on demand;
- `inference.frames.images`: image lists, one file per frame (OpenCV);
- `inference.frames.dicom`: DICOM series, one greyscale slice per file (pydicom);
- `inference.frames.arrays`: frames already in memory;
- `inference.frames.cache`: the bounded caches every source decodes through;
- `inference.frames.errors`: `FrameError`, what every source raises.

Decoded frames are RGB uint8 arrays (height x width x 3) and pass through a bounded LRU cache:
a whole video is never held in memory. Sources are safe to share between threads (one lock),
though decoding is sequential. Callers import from the module of the kind they need; the names
below are the package's short public entry for code that does not care which.
"""

from masklog.inference.frames.arrays import ArrayFrames
from masklog.inference.frames.cache import DEFAULT_CACHE_FRAMES, FrameCache, SharedCacheView, SharedFrameCache
from masklog.inference.frames.dicom import DicomSeriesFrames, DicomSeriesInfo, probe_dicom_series
from masklog.inference.frames.errors import FrameError, TooManyPixels
from masklog.inference.frames.images import ImageListFrames, read_image
from masklog.inference.frames.video import VideoFrames, VideoInfo, probe_video

__all__ = [
    "DEFAULT_CACHE_FRAMES",
    "ArrayFrames",
    "DicomSeriesFrames",
    "DicomSeriesInfo",
    "FrameCache",
    "FrameError",
    "ImageListFrames",
    "SharedCacheView",
    "SharedFrameCache",
    "TooManyPixels",
    "VideoFrames",
    "VideoInfo",
    "probe_dicom_series",
    "probe_video",
    "read_image",
]

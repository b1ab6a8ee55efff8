"""The SAM 2 backend: the real `sam2` model (torch) answers clicks and is the tracker registered
as 'sam2', which the alias 'advanced' names on a server that loads it (T7).

- `inference.sam2.model`: loading the network once from a checkpoint (`load_sam2`, `Sam2Model`);
- `inference.sam2.image`: `Sam2Segmenter`, clicks to masks on one frame;
- `inference.sam2.video`: `Sam2Tracker`, tracking with memory that does not grow with the video.

Nothing is imported here: torch loads only when a module of this package is imported, which
`inference.registry` does only for a server configured with this backend. Inside this package
`import sam2` is the installed `sam2` distribution (absolute imports), not this package.
"""

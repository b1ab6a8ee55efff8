"""Getting labels out and in (E1, E2): COCO, YOLO and the event log itself.

- `routes.py`: the HTTP routes (export a project, import a COCO file onto a media item);
- `jobs.py`: the same without a server, for `masklog export` and `masklog import-log`;
- `writer.py`: what an export format is; `writers/`: one module per format;
- `formats.py`: the `{name: writer}` registry that the route, the CLI's `--format`, the OpenAPI
  description and the docs all follow.
"""

"""One API over a local folder and an S3 prefix, so every writer runs unchanged on both.

No Dagster import: Glue jobs use it too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs


class LakehouseStorage:
    """The root of the lakehouse: a local path, ``file://`` URI or ``s3://bucket/prefix``.

    ``s3_endpoint_url`` points the S3 client somewhere other than AWS (MinIO, moto's server).
    Credentials and region follow boto's usual chain (environment, config files, instance role).
    """

    def __init__(self, uri: str, s3_endpoint_url: str | None = None, s3_region: str | None = None):
        self.uri = uri.rstrip("/")
        self.is_s3 = self.uri.startswith("s3://")
        if self.is_s3:
            options: dict = {"region": s3_region or os.environ.get("AWS_REGION") or os.environ.get(
                "AWS_DEFAULT_REGION") or "us-east-1"}
            if s3_endpoint_url:
                scheme, _, host = s3_endpoint_url.partition("://")
                options.update(endpoint_override=host.rstrip("/"), scheme=scheme)
            self.fs: pafs.FileSystem = pafs.S3FileSystem(**options)
            self._root = self.uri[len("s3://"):]
        else:
            self.fs = pafs.LocalFileSystem()
            self._root = str(Path(self.uri.removeprefix("file://")).resolve())

    def __repr__(self) -> str:
        return f"LakehouseStorage({self.uri!r})"

    def path(self, relpath: str) -> str:
        """The filesystem path of ``relpath`` (what ``self.fs`` takes)."""
        return f"{self._root}/{relpath.strip('/')}"

    def uri_of(self, relpath: str) -> str:
        """The full URI of ``relpath`` (what Spark, DuckDB or Athena take)."""
        return f"s3://{self.path(relpath)}" if self.is_s3 else self.path(relpath)

    def exists(self, relpath: str) -> bool:
        return self.fs.get_file_info(self.path(relpath)).type != pafs.FileType.NotFound

    def read_bytes(self, relpath: str) -> bytes | None:
        """The object's content, or None when there is no such object."""
        try:
            with self.fs.open_input_stream(self.path(relpath)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Replace the object whole: readers see the old content or the new, never a mix."""
        with self.open_output(relpath) as stream:
            stream.write(data)

    @contextmanager
    def open_output(self, relpath: str) -> Iterator[pafs.NativeFile]:
        """A stream whose object appears only once the block exits without error.

        Locally the bytes go to a hidden sibling that is renamed into place (an atomic
        rename); on S3 an object is invisible until its upload completes. On error nothing
        is left behind.
        """
        final = self.path(relpath)
        if self.is_s3:
            stream = self.fs.open_output_stream(final)
            try:
                yield stream
            except BaseException:
                # Closing completes the upload, so the object must be removed again.
                stream.close()
                self.delete(relpath)
                raise
            stream.close()
            return
        directory, name = os.path.split(final)
        os.makedirs(directory, exist_ok=True)
        aside = os.path.join(directory, f".inflight-{uuid.uuid4().hex}-{name}")
        stream = self.fs.open_output_stream(aside)
        try:
            yield stream
            stream.close()
            os.replace(aside, final)
        except BaseException:
            stream.close()
            if os.path.exists(aside):
                os.remove(aside)
            raise

    def copy(self, source: str, target: str) -> None:
        """Copy an object inside the lakehouse: a hard link on a local disk where it can be (the
        files are never modified in place, only replaced or deleted), a server-side copy on S3."""
        if not self.is_s3:
            os.makedirs(os.path.dirname(self.path(target)), exist_ok=True)
            try:
                os.link(self.path(source), self.path(target))
                return
            except OSError:
                pass  # another file system, or one without hard links: copy the bytes
        self.fs.copy_file(self.path(source), self.path(target))

    def size(self, relpath: str) -> int:
        return self.fs.get_file_info(self.path(relpath)).size or 0

    def delete(self, relpath: str) -> None:
        try:
            self.fs.delete_file(self.path(relpath))
        except FileNotFoundError:
            pass

    def list_files(self, relprefix: str) -> list[str]:
        """Paths (relative to the root) of every object below ``relprefix``."""
        selector = pafs.FileSelector(self.path(relprefix), recursive=True, allow_not_found=True)
        root = self._root + "/"
        return sorted(
            info.path.removeprefix(root)
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

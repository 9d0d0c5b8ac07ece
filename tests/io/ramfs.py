"""A Beam FileSystem for TensorFlow's `ram://`, for tests.

TensorFlow serves `ram://` in memory, per process; with this class (found by
Beam through FileSystem's subclass registry once imported) Beam's
FileSystems serve the same files by delegating to `tf.io.gfile`. Like an
object store, `ram://` cannot rename a directory, so it stands for `gs://`
and `s3://` in tests that need both Beam and TensorFlow to reach the output.
"""

import io
import posixpath

import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem

gfile = tf.io.gfile


class RamFileSystem(FileSystem):
    """`ram://` through tf.io.gfile."""

    @classmethod
    def scheme(cls):
        return "ram"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        gfile.makedirs(path)

    def has_dirs(self):
        return True

    def _list(self, dir_or_prefix):
        top = dir_or_prefix if gfile.isdir(dir_or_prefix) else posixpath.dirname(dir_or_prefix)
        if not gfile.isdir(top):
            return
        for folder, _, files in gfile.walk(top):
            for name in files:
                path = self.join(folder, name)
                if path.startswith(dir_or_prefix):
                    yield self.metadata(path)

    def _open(self, path, mode, compression_type):
        # tf's GFile is not a full io object (no `closed`, `readable`), which
        # pyarrow and Beam's CompressedFile expect: buffer in memory instead.
        compression_type = FileSystem._get_compression_type(path, compression_type)
        if mode == "rb":
            with gfile.GFile(path, "rb") as f:
                raw = _Download(f.read())
        else:
            raw = _Upload(path)
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        gfile.makedirs(self.split(path)[0])
        return self._open(path, "wb", compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            if gfile.isdir(source):
                for folder, _, files in gfile.walk(source):
                    for name in files:
                        src = self.join(folder, name)
                        dst = destination.rstrip("/") + src[len(source.rstrip("/")):]
                        gfile.makedirs(self.split(dst)[0])
                        gfile.copy(src, dst, overwrite=True)
            else:
                gfile.copy(source, destination, overwrite=True)

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path):
        return gfile.exists(path)

    def size(self, path):
        return gfile.stat(path).length

    def last_updated(self, path):
        return gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        missing = {p: FileNotFoundError(p) for p in paths if not gfile.exists(p)}
        for path in paths:
            if path in missing:
                continue
            gfile.rmtree(path) if gfile.isdir(path) else gfile.remove(path)
        if missing:
            raise BeamIOError("delete: not found", missing)


class _Download(io.BytesIO):
    mode = "rb"  # Beam's CompressedFile reads it


class _Upload(io.BytesIO):
    """Bytes written here are stored at `path` on close, whole, as an object store does."""

    mode = "wb"

    def __init__(self, path):
        super().__init__()
        self._path = path

    def close(self):
        if not self.closed:
            with gfile.GFile(self._path, "wb") as f:
                f.write(self.getvalue())
        super().close()


def copy_to_ram(local_path: str, uri: str) -> str:
    """Copies a local file to `uri` (a ram:// path) and returns `uri`."""
    gfile.makedirs(posixpath.dirname(uri))
    gfile.copy(local_path, uri, overwrite=True)
    return uri

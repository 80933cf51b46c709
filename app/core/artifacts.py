"""The artifact store every host sees: a run's files (model, predictions, checkpoint) addressed by run id and kind.

Two backends behind one interface: a directory (local disk, or a shared filesystem such as NFS mounted at the same
path on every host) and an S3-compatible bucket (``s3://bucket/prefix``; AWS, MinIO and the like). The database
stores only the kind, never a path, so a run trained on one host is downloadable from every other.
Writes are atomic in both: a temporary name renamed into place, or one completed upload.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from fitboard.app.core.errors import StorageUnavailable
from fitboard.app.core.redact import redact

# The file each kind is stored as, under the run's id. Later kinds are added here, nowhere else.
# checkpoint and best (the keep-best weights a checkpoint refers to) exist only until the run succeeds.
KINDS = {"model": "model.pkl", "predictions": "predictions.csv", "checkpoint": "checkpoint.pth", "best": "best.pth",
         # a tracked run's learn.export file as its notebook uploaded it: stored and served back, never loaded here
         "uploaded_model": "uploaded-model.pkl"}
CHUNK = 1 << 20  # bytes per read when streaming a download


class ArtifactError(StorageUnavailable):
    """The artifact store could not be read or written (a full disk, a missing mount, bad credentials)."""

    def __init__(self, message: str):
        super().__init__(redact(message))  # its text reaches answers, pages, logs and doctor reports


# s3://[KEY:SECRET@]bucket[/prefix]; the secret may hold / and + (AWS secrets do), so it runs to the last @
S3_URL = re.compile(r"s3://(?:(?P<key>[^:@/]+):(?P<secret>.+)@)?(?P<bucket>[^/@]*)(?P<prefix>/.*)?$", re.DOTALL)


def file_name(kind: str) -> str:
    """The stored name of a kind; ValueError for an unknown kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind]


class ArtifactStore:
    """What web and workers ask of the store; each backend implements these."""

    location: str  # where it is, for messages and `fitboard doctor`

    def put(self, run_id: int, kind: str, src: Path, move: bool = False) -> int:
        """Store a local file as the run's artifact of this kind (atomically replacing an older one); its size."""
        raise NotImplementedError

    def local_path(self, run_id: int, kind: str) -> Path | None:
        """The artifact as a readable local file when the backend has one (a directory), else None."""
        return None

    def fetch(self, run_id: int, kind: str, dest: Path) -> Path | None:
        """Copy the artifact to the local file dest (atomically); dest, or None when absent."""
        raise NotImplementedError

    def open(self, run_id: int, kind: str) -> tuple[Iterator[bytes], int] | None:
        """The artifact as a stream of chunks and its size; None when absent."""
        raise NotImplementedError

    def read_text(self, run_id: int, kind: str) -> str | None:
        """A small text artifact's content (predictions); None when absent."""
        opened = self.open(run_id, kind)
        return None if opened is None else b"".join(opened[0]).decode("utf-8")

    def delete(self, run_id: int, kind: str) -> None:
        """Remove one artifact (nothing when absent)."""
        raise NotImplementedError

    def delete_run(self, run_id: int) -> None:
        """Remove every artifact of a run."""
        for kind in KINDS:
            self.delete(run_id, kind)

    def probe(self) -> str:
        """Write, read back and delete a small object; a line saying so, or ArtifactError saying what failed."""
        payload = uuid.uuid4().hex.encode()
        key = f".probe-{uuid.uuid4().hex}"
        try:
            self._write_probe(key, payload)
            if self._read_probe(key) != payload:
                raise ArtifactError(f"{self.location}: a probe object read back different bytes")
            self._delete_probe(key)
        except ArtifactError:
            raise
        except Exception as exc:  # permissions, a full disk, bad credentials, an unreachable endpoint
            raise ArtifactError(f"{self.location}: {type(exc).__name__}: {exc}") from exc
        return f"{self.location}: wrote, read back and deleted a probe"

    def _write_probe(self, key: str, payload: bytes) -> None:
        raise NotImplementedError

    def _read_probe(self, key: str) -> bytes:
        raise NotImplementedError

    def _delete_probe(self, key: str) -> None:
        raise NotImplementedError


def copy_atomically(src: Path, dest: Path, fsync: bool = False) -> None:
    """Copy src to dest through a temporary name in dest's folder, renamed into place (with fsync first: on disk
    before it is visible); readers see the old file or the whole new one, and a failure leaves nothing behind."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")  # one per copy: never two writers on one file
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
            if fsync:
                fout.flush()
                os.fsync(fout.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    """Read a file object to the end in CHUNK-sized pieces, closing it afterwards."""
    with fh:
        while block := fh.read(CHUNK):
            yield block


class DirectoryStore(ArtifactStore):
    """Artifacts under a directory: <root>/<run id>/<file>. Shared across hosts when root is a shared mount."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)

    def _path(self, run_id: int, kind: str) -> Path:
        return self.root / str(int(run_id)) / file_name(kind)

    def put(self, run_id: int, kind: str, src: Path, move: bool = False) -> int:
        dest = self._path(run_id, kind)
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = Path(src).stat().st_size
        if move:
            try:
                os.replace(src, dest)  # one filesystem: a rename, atomic and free
                return size
            except OSError:
                pass  # another filesystem (a shared mount): copy, then rename below
        try:
            copy_atomically(src, dest, fsync=True)
        except OSError as exc:  # a full disk, a permission problem, a stale shared mount
            raise ArtifactError(f"{self.location}: could not store the {kind} of run {run_id}: {exc}") from exc
        if move:
            Path(src).unlink(missing_ok=True)
        return size

    def local_path(self, run_id: int, kind: str) -> Path | None:
        path = self._path(run_id, kind)
        return path if path.is_file() else None

    def fetch(self, run_id: int, kind: str, dest: Path) -> Path | None:
        src = self.local_path(run_id, kind)
        if src is None:
            return None
        copy_atomically(src, dest)
        return Path(dest)

    def open(self, run_id: int, kind: str) -> tuple[Iterator[bytes], int] | None:
        path = self.local_path(run_id, kind)
        if path is None:
            return None
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return None  # deleted between the check and the open
        except OSError as exc:  # a permission problem, a stale shared mount
            raise ArtifactError(f"{self.location}: could not read the {kind} of run {run_id}: {exc}") from exc
        return _chunks(fh), os.fstat(fh.fileno()).st_size

    def delete(self, run_id: int, kind: str) -> None:
        self._path(run_id, kind).unlink(missing_ok=True)

    def delete_run(self, run_id: int) -> None:
        shutil.rmtree(self.root / str(int(run_id)), ignore_errors=True)

    def _write_probe(self, key: str, payload: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{key}.tmp"
        tmp.write_bytes(payload)
        os.replace(tmp, self.root / key)

    def _read_probe(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def _delete_probe(self, key: str) -> None:
        (self.root / key).unlink()


class S3Store(ArtifactStore):
    """Artifacts in an S3-compatible bucket: s3://bucket/prefix/<run id>/<file>. Credentials come from the usual
    AWS variables (or an instance role); endpoint_url points at a MinIO-style server."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        parts = S3_URL.match(url)
        if parts is None or not parts["bucket"]:
            raise ValueError(f"FITBOARD_ARTIFACT_ROOT={redact(url)!r} names no bucket (expected s3://bucket/prefix)")
        self.bucket, self.prefix = parts["bucket"], (parts["prefix"] or "").strip("/")
        self.location = redact(f"s3://{self.bucket}/{self.prefix}".rstrip("/")
                               + (f" at {endpoint_url}" if endpoint_url else ""))
        # Credentials in the URL (s3://KEY:SECRET@bucket) take precedence over the AWS_* variables; never shown.
        keys = ({"aws_access_key_id": unquote(parts["key"]), "aws_secret_access_key": unquote(parts["secret"])}
                if parts["key"] else {})
        try:
            import boto3  # optional: only hosts that store artifacts in S3 need it
            from botocore.config import Config
        except ImportError as exc:
            raise ArtifactError("an s3:// artifact root needs boto3: pip install 'fitboard[s3]'") from exc
        # Short connect timeout and a few retries: an unreachable endpoint fails a probe in seconds, not minutes.
        config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config, **keys)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _run_key(self, run_id: int, kind: str) -> str:
        return self._key(f"{int(run_id)}/{file_name(kind)}")

    def _missing(self, exc: Exception) -> bool:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        return code in ("404", "NoSuchKey", "NotFound")

    def put(self, run_id: int, kind: str, src: Path, move: bool = False) -> int:
        size = Path(src).stat().st_size
        # An upload becomes visible only once complete (multipart uploads too): readers never see half a file.
        try:
            self.client.upload_file(str(src), self.bucket, self._run_key(run_id, kind))
        except Exception as exc:  # an unreachable endpoint, refused credentials: the web answers 503, not 500
            raise ArtifactError(f"{self.location}: could not store the {kind} of run {run_id}: {exc}") from exc
        if move:
            Path(src).unlink(missing_ok=True)
        return size

    def fetch(self, run_id: int, kind: str, dest: Path) -> Path | None:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            self.client.download_file(self.bucket, self._run_key(run_id, kind), str(tmp))
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            if self._missing(exc):
                return None
            raise ArtifactError(f"{self.location}: could not read the {kind} of run {run_id}: {exc}") from exc
        os.replace(tmp, dest)
        return dest

    def open(self, run_id: int, kind: str) -> tuple[Iterator[bytes], int] | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._run_key(run_id, kind))
        except Exception as exc:  # an unreachable endpoint, refused credentials: the web answers 503, not 500
            if self._missing(exc):
                return None
            raise ArtifactError(f"{self.location}: could not read the {kind} of run {run_id}: {exc}") from exc
        body = obj["Body"]
        return body.iter_chunks(CHUNK), int(obj["ContentLength"])

    def delete(self, run_id: int, kind: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._run_key(run_id, kind))

    def _write_probe(self, key: str, payload: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=payload)

    def _read_probe(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def _delete_probe(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


@lru_cache(maxsize=8)
def open_store(root: str | Path, endpoint_url: str | None = None) -> ArtifactStore:
    """The store an artifact root names: s3://bucket/prefix, or a directory."""
    text = str(root)
    if text.startswith("s3://"):
        return S3Store(text, endpoint_url)
    if "://" in text:
        raise ValueError(f"FITBOARD_ARTIFACT_ROOT={redact(text)!r}: expected a directory or s3://bucket/prefix")
    return DirectoryStore(Path(text))


def store_for(settings) -> ArtifactStore:
    """The artifact store a Settings object names (one per process and root)."""
    return open_store(settings.artifact_location, settings.s3_endpoint_url)

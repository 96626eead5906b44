"""Large payloads kept out of rows: a content-addressed directory of JSON files.

A step output (or input) whose JSON is larger than ``threshold`` bytes is written to
``<root>/<sha256[:2]>/<sha256>.json`` and the event keeps ``{"$artifact": "sha256:<hex>",
"size": n}`` in its place. Files are written to a temporary name and renamed, so a reader never
sees half a payload; equal payloads share one file. With several machines, ``root`` must be a
shared directory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from overture import serde
from overture.serde import JSON

DEFAULT_THRESHOLD = 256 * 1024
MARKER = "$artifact"


class ArtifactMissing(LookupError):
    """An event refers to an artifact that is not in the store."""


class Artifacts:
    """Offload and restore large JSON values."""

    def __init__(self, root: str | os.PathLike[str], *, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.root = Path(root)
        self.threshold = threshold

    def offload(self, value: JSON) -> JSON:
        """``value`` itself when small, otherwise a reference to where it was written."""
        data = serde.dumps(value)
        if len(data) <= self.threshold:
            return value
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        return {MARKER: f"sha256:{digest}", "size": len(data)}

    def restore(self, value: JSON) -> JSON:
        """The payload a reference points to; anything else unchanged."""
        if not (isinstance(value, dict) and len(value) == 2 and MARKER in value):
            return value
        ref = value[MARKER]
        if not (isinstance(ref, str) and ref.startswith("sha256:")):
            return value
        digest = ref.removeprefix("sha256:")
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            return value  # never build a path from anything but a well-formed digest
        try:
            restored: JSON = serde.loads(self._path(digest).read_bytes())
            return restored
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {ref} is missing from {self.root}") from None

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.json"

"""Reading an export as it came: a folder or a zip archive, never written to, never unpacked.

A zip is read member by member straight from the archive. It is refused whole when a member's
name could point outside it (an absolute path, a drive letter, a `..` part), or when its members
add up to more than MAX_ARCHIVE_BYTES uncompressed (a zip bomb declares its size, and no member
is ever read past its declared size).

`ImageIndex` finds the image an annotation names among the files of one or more such sources,
whatever the tool kept of its path: the exact path, the path without suffix (CVAT's lists), the
last part, or the last part without Label Studio's upload prefix ("1a2b3c4d-photo.jpg").
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fcnseg.data.images import IMAGE_SUFFIXES
from fcnseg.errors import FcnsegError

MAX_ARCHIVE_BYTES = 16 * 2**30  # all members together, uncompressed
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio renames an upload to <hash>-<name>


class ExportFiles:
    """The files of an export folder or zip, by their posix path inside it."""

    def __init__(self, path: Path, max_bytes: int = MAX_ARCHIVE_BYTES) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.is_dir():
            files = (p for p in sorted(path.rglob("*")) if p.is_file())
            self._sizes = {p.relative_to(path).as_posix(): 0 for p in files}
        elif zipfile.is_zipfile(path):
            self._zip = _open_zip(path, max_bytes)
            self._sizes = {i.filename: i.file_size for i in self._zip.infolist() if not i.is_dir()}
        else:
            raise FcnsegError(
                f"{path} is neither a folder nor a zip archive; give the export as the tool "
                "wrote it (its zip, or the folder it unpacks to)."
            )

    def names(self) -> list[str]:
        return list(self._sizes)

    def exists(self, name: str) -> bool:
        return name in self._sizes

    def describe(self, name: str) -> str:
        """Where a member is, for messages: export.zip:SegmentationClass/a.png or a path."""
        return f"{self.path}:{name}" if self._zip else str(self.path / name)

    def read(self, name: str) -> bytes:
        if name not in self._sizes:
            raise FcnsegError(f"{self.describe(name)} does not exist in the export.")
        if self._zip is None:
            return (self.path / name).read_bytes()
        try:
            with self._zip.open(name) as member:
                data = member.read(self._sizes[name] + 1)  # never past its declared size
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise FcnsegError(f"cannot read {self.describe(name)}: {error}") from None
        if len(data) != self._sizes[name]:
            raise FcnsegError(
                f"{self.describe(name)} unpacks to {len(data)} bytes where the archive declares "
                f"{self._sizes[name]}; the zip is damaged or forged: export it again."
            )
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _open_zip(path: Path, max_bytes: int) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise FcnsegError(f"cannot open the zip archive {path}: {error}") from None
    total = 0
    for info in archive.infolist():
        name = info.filename
        parts = re.split(r"[/\\]", name)
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            archive.close()
            raise FcnsegError(
                f"the zip archive {path} holds a member named {name!r}, a path that leads "
                "outside the archive; it is not read. Export it again from the tool, or unpack "
                "it yourself and give the folder."
            )
        total += info.file_size
    if total > max_bytes:
        archive.close()
        raise FcnsegError(
            f"the zip archive {path} unpacks to {total / 2**30:.1f} GiB, more than the "
            f"{max_bytes / 2**30:.1f} GiB fcnseg reads from an archive; unpack it yourself and "
            "give the folder."
        )
    return archive


@dataclass(frozen=True)
class ImageRef:
    """One image file of an export (or of the --images folder), read only when copied."""

    files: ExportFiles
    name: str  # posix path inside `files`

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()

    def describe(self) -> str:
        return self.files.describe(self.name)

    def read(self) -> bytes:
        return self.files.read(self.name)


class ImageIndex:
    """The image files under given folders of given sources, found by any part of their path."""

    def __init__(self, roots: list[tuple[ExportFiles, str]]) -> None:
        self.where = [
            files.describe(prefix) if prefix else str(files.path) for files, prefix in roots
        ]
        self._keys: dict[str, list[ImageRef]] = {}
        for files, prefix in roots:
            for name in files.names():
                inside = PurePosixPath(name[len(prefix) :])
                if name.startswith(prefix) and inside.suffix.lower() in IMAGE_SUFFIXES:
                    self._add(inside, ImageRef(files, name))

    def _add(self, inside: PurePosixPath, ref: ImageRef) -> None:
        last = inside.name
        keys = {
            f"path:{inside}",
            f"path:{inside.with_suffix('')}",
            f"name:{last}",
            f"name:{inside.stem}",
            f"name:{UPLOAD_PREFIX.sub('', last)}",
        }
        for key in keys:
            self._keys.setdefault(key, []).append(ref)

    def images(self) -> list[ImageRef]:
        """Every image file of the index, once."""
        return sorted(
            {ref for key, refs in self._keys.items() if key.startswith("path:") for ref in refs},
            key=ImageRef.describe,
        )

    def find(self, reference: str) -> ImageRef | None:
        """The image `reference` names (a path, maybe without suffix), or None; ambiguous
        last parts are an error rather than a guess."""
        path = PurePosixPath(reference.replace("\\", "/").lstrip("/"))
        stripped = UPLOAD_PREFIX.sub("", path.name)
        keys = (f"path:{path}", f"name:{path.name}", f"name:{stripped}", f"name:{path.stem}")
        for key in keys:
            found = self._keys.get(key, [])
            if len(found) == 1 or (found and key.startswith("path:")):
                return found[0]
            if len(found) > 1:
                shown = " and ".join(ref.describe() for ref in found[:2])
                raise FcnsegError(
                    f"the annotation of '{reference}' could be for {shown}; give --images a "
                    "folder where each image name occurs once."
                )
        return None

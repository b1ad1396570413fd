"""Zip exports are read in place and safely: no member may point outside, no bomb unpacked."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from fcnseg.data.convert.archive import ExportFiles, ImageIndex
from fcnseg.errors import FcnsegError
from tests.data.convert.exports import cvat_files, write_folder, write_zip


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/x.png"])
def test_members_leading_outside_refuse_the_archive(tmp_path: Path, member: str):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("labelmap.txt", "cat:1,2,3::\n")
        archive.writestr(zipfile.ZipInfo(member), b"x")  # ZipInfo keeps the name as given
    with pytest.raises(FcnsegError, match="leads outside the archive"):
        ExportFiles(path)


def test_total_size_is_bounded(tmp_path: Path):
    path = write_zip(tmp_path / "export.zip", {"a.bin": bytes(5000)})  # deflates to a few bytes
    with pytest.raises(FcnsegError, match="more than the"):
        ExportFiles(path, max_bytes=4096)
    assert ExportFiles(path, max_bytes=5000).read("a.bin") == bytes(5000)


def test_folder_and_zip_hold_the_same_files(tmp_path: Path):
    files = cvat_files()
    folder = ExportFiles(write_folder(tmp_path / "export", files))
    packed = ExportFiles(write_zip(tmp_path / "export.zip", files))
    assert sorted(folder.names()) == sorted(packed.names()) == sorted(files)
    assert all(packed.read(name) == folder.read(name) == data for name, data in files.items())
    with pytest.raises(FcnsegError, match="does not exist in the export"):
        packed.read("nothing.png")
    with pytest.raises(FcnsegError, match="neither a folder nor a zip"):
        ExportFiles(tmp_path / "export" / "labelmap.txt")


def test_images_found_by_path_name_or_upload_name(tmp_path: Path):
    files = {
        "JPEGImages/sub/a.jpg": b"1",
        "JPEGImages/b.png": b"2",
        "JPEGImages/1a2b3c4d-c.png": b"3",
    }
    index = ImageIndex([(ExportFiles(write_folder(tmp_path / "e", files)), "JPEGImages/")])
    assert index.find("sub/a").name == "JPEGImages/sub/a.jpg"  # CVAT: the path without suffix
    assert index.find("/data/upload/3/b.png").name == "JPEGImages/b.png"  # by the last part
    assert index.find("c.png").name == "JPEGImages/1a2b3c4d-c.png"  # the upload prefix dropped
    assert index.find("9f8e7d6c-b.png").name == "JPEGImages/b.png"
    assert index.find("d.png") is None
    twice = {"x/a.png": b"1", "y/a.png": b"2"}
    index = ImageIndex([(ExportFiles(write_folder(tmp_path / "t", twice)), "")])
    with pytest.raises(FcnsegError, match=r"could be for .*x/a\.png and .*y/a\.png"):
        index.find("a.png")

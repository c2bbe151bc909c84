import os

import pytest

from lightning_ssd.files import atomic_open, atomic_write_text


def test_written_file_has_the_umask_permissions_and_no_temporary_is_left(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "sub" / "r.md", "table\n")
    finally:
        os.umask(old)
    path = tmp_path / "sub" / "r.md"
    assert path.read_text() == "table\n"
    assert path.stat().st_mode & 0o777 == 0o644  # mkstemp alone would leave 0o600
    assert [p.name for p in path.parent.iterdir()] == ["r.md"]


def test_a_failed_write_keeps_the_earlier_file_whole(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_text(path, "earlier")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_binary_mode(tmp_path):
    with atomic_open(tmp_path / "f.png", "wb") as f:
        f.write(b"\x89PNG")
    assert (tmp_path / "f.png").read_bytes() == b"\x89PNG"

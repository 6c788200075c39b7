"""attrib_core.fileio: atomic writes leave the old file or the new one, never half of one."""

import pytest

from attrib_core.fileio import atomic_path, atomic_write


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_two_writers_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "model.pt"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("one")
        second.write_text("two")
    assert target.read_text() == "one"  # the last rename wins; both were whole files


def test_a_written_file_gets_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "results.json", "{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o644

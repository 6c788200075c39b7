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


def make_run_dir(results_dir):
    from attrib_core.fileio import new_run_dir

    return new_run_dir(results_dir).name


def test_sessions_started_in_the_same_second_get_their_own_folders(tmp_path):
    from tests.racing import race

    trials = race(make_run_dir, (), 4, 20, fresh=lambda trial: (tmp_path / f"trial{trial}",))
    for trial, names in enumerate(trials):
        assert len(set(names)) == 4, (trial, names)
        assert sorted(p.name for p in (tmp_path / f"trial{trial}").iterdir()) == sorted(names)

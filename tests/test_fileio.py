"""hwq.fileio: an output directory is replaced as a whole, atomically, or not at all."""

import os
import threading

import pytest

from hwq import fileio
from hwq.errors import InputError
from hwq.fileio import MARKER, check_output_dir, staged_output


def write_run(out, files):
    """One successful run that writes ``files`` ({relative name: text})."""
    with staged_output(out) as stage:
        for name, text in files.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_text(text)


def tree(directory):
    """{relative path: text} of every file under ``directory``."""
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_rerun_leaves_no_stale_file(tmp_path):
    out = tmp_path / "out"
    write_run(out, {"a.v": "one", "b.v": "one", "synth/job1/log": "one"})
    write_run(out, {"a.v": "two", "synth/job2/log": "two"})
    assert tree(out) == {"a.v": "two", "synth/job2/log": "two", MARKER: (out / MARKER).read_text()}
    assert sorted(os.listdir(tmp_path)) == ["out"]             # nothing left beside it


def test_a_failed_run_leaves_the_old_directory_intact(tmp_path):
    out = tmp_path / "out"
    write_run(out, {"a.v": "old", "sub/b.v": "old"})
    before, inode = tree(out), out.stat().st_ino
    with pytest.raises(RuntimeError, match="tool failed"):
        with staged_output(out) as stage:
            (stage / "a.v").write_text("new")
            (stage / "c.v").write_text("new")
            raise RuntimeError("tool failed")
    assert tree(out) == before and out.stat().st_ino == inode
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_no_partial_output_while_running_or_after_a_failure(tmp_path):
    out = tmp_path / "deep" / "er" / "out"
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out) as stage:
            (stage / "a.v").write_text("half")
            assert not out.exists()                             # nothing visible before the end
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []                           # parents it made are gone too
    write_run(out, {"a.v": "one"})
    with staged_output(out) as stage:
        (stage / "a.v").write_text("two")
        (stage / "b.v").write_text("two")
        assert tree(out) == {"a.v": "one", MARKER: (out / MARKER).read_text()}   # still the old run
    assert (out / "a.v").read_text() == "two" and (out / "b.v").read_text() == "two"


def test_a_reader_sees_the_old_or_the_new_directory_never_a_mix(tmp_path):
    out = tmp_path / "out"
    runs = [{f"{tag}{i}.v": tag for i in range(20)} for tag in ("x", "y")]
    write_run(out, runs[0])
    complete = [set(run) | {MARKER} for run in runs]
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append(set(os.listdir(out)))
            except FileNotFoundError:                           # the instant between the two renames
                pass

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            write_run(out, runs[i % 2])
    finally:
        stop.set()
        thread.join()
    # a listing is one run's files: all of them, or (for a reader that opened the old directory
    # just before the swap) some of the old run's while the old directory is being removed
    assert seen and all(any(listing <= run for run in complete) for listing in seen)
    assert sum(listing in complete for listing in seen) > 0.9 * len(seen)


def test_a_failed_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_run(out, {"a.v": "old"})
    before = tree(out)
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:                                     # the new directory's rename in
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(fileio.os, "rename", rename)
    with pytest.raises(OSError, match="No space"):
        write_run(out, {"a.v": "new"})
    monkeypatch.undo()
    assert tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_unwritable_parent_is_an_input_error(tmp_path):
    for out in ("/proc/hwq-cannot-write-here", "/proc/hwq-cannot-write-here/deeper/out"):
        with pytest.raises(InputError, match="is not writable"):
            with staged_output(out):
                pytest.fail("the body must not run")
    if os.geteuid() != 0:                                        # mode bits do not stop root
        parent = tmp_path / "parent"
        write_run(parent / "out", {"a.v": "old"})
        parent.chmod(0o555)
        try:
            with pytest.raises(InputError, match="its parent .* is not writable"):
                check_output_dir(parent / "out")
        finally:
            parent.chmod(0o755)
        assert (parent / "out" / "a.v").read_text() == "old"


def test_a_directory_hwq_did_not_write_is_refused_before_any_work(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match=r"holds files hwq did not write \(thesis.tex\) and no .hwq-output"):
        with staged_output(out):
            pytest.fail("the body must not run")
    assert tree(out) == {"thesis.tex": "precious"} and sorted(os.listdir(tmp_path)) == ["mine"]
    (out / "thesis.tex").unlink()                               # an empty directory is fine
    write_run(out, {"a.v": "one"})
    assert (out / MARKER).exists()


def test_readme_and_git_files_are_carried_over(tmp_path):
    out = tmp_path / "rtl_out"
    out.mkdir()
    (out / "README.md").write_text("generated output")
    (out / ".gitignore").write_text("*\n")
    write_run(out, {"a.v": "one"})
    write_run(out, {"b.v": "two"})
    assert sorted(os.listdir(out)) == [".gitignore", MARKER, "README.md", "b.v"]
    assert (out / "README.md").read_text() == "generated output"


def test_a_symlinked_output_is_replaced_behind_the_link(tmp_path):
    target = tmp_path / "real"
    write_run(target, {"a.v": "one"})
    link = tmp_path / "link"
    link.symlink_to(target)
    write_run(link, {"b.v": "two"})
    assert link.is_symlink() and sorted(os.listdir(target)) == [MARKER, "b.v"]


def test_new_directory_gets_the_usual_permissions(tmp_path):
    out = tmp_path / "out"
    write_run(out, {"a.v": "one"})
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask


def test_output_path_that_is_a_file_or_holds_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        check_output_dir(tmp_path / "file")
    write_run(tmp_path / "out", {"a.v": "one"})
    (tmp_path / "out" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "out" / "sub")
    with pytest.raises(InputError, match="holds the working directory"):
        check_output_dir(tmp_path / "out")

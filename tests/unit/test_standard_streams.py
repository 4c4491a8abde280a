"""A run leaves the command's stdout and stderr where they were, even when a library's output capture could not
put them back (Dagster's compute-log capture when flushing to a full disk fails): the command's error line
must reach the terminal."""

from __future__ import annotations

import os

import pytest

from seg_pipeline.cli.launch import standard_streams_kept


@pytest.mark.parametrize("fd", [1, 2])
def test_a_stream_left_redirected_during_the_run_is_put_back(fd, tmp_path, capfd):
    log = tmp_path / "compute.log"
    with standard_streams_kept(), log.open("wb") as capture:
        os.dup2(capture.fileno(), fd)  # what the capture does as the run starts; its restore never comes
        os.write(fd, b"during the run\n")
    os.write(fd, b"error: no space left\n")

    out, err = capfd.readouterr()
    assert log.read_bytes() == b"during the run\n"
    assert (out if fd == 1 else err) == "error: no space left\n"


def test_streams_put_back_by_the_library_stay_as_they_are(capfd):
    with standard_streams_kept():
        saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(saved, 1)  # a capture that restored properly
        os.close(saved)
        os.close(devnull)
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"

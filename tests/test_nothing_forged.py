"""Nothing forged, wave 3 (issue 27): one regression test per item of the adversarial
pass, written against the behaviour it reported."""

from __future__ import annotations

import os

import pytest

from helpers import assert_one_line_error

# 3. native crashes and hangs on corrupt input -----------------------------------------


@pytest.mark.slow
def test_a_corrupt_pte_is_one_line_not_a_crash(tmp_path, cli):
    """Random bytes once killed `validate` and `bench` with SIGABRT (exit 134)."""
    junk = tmp_path / "junk.pte"
    junk.write_bytes(os.urandom(4096))
    for command in (f"bench {junk}", f"validate {junk} --attention eaa --dim 8 --hw 2x2"):
        assert_one_line_error(cli(command), "junk.pte is not a .pte file")
    # the right header and garbage after it: loaded in a separate process first
    forged = tmp_path / "forged.pte"
    forged.write_bytes(os.urandom(4) + b"ET12" + os.urandom(4096))
    for command in (f"bench {forged}", f"validate {forged} --attention eaa --dim 8 --hw 2x2"):
        assert_one_line_error(cli(command), "forged.pte")


def test_a_fifo_or_an_empty_file_is_one_line(tmp_path, cli):
    """A FIFO named x.onnx made `inspect` hang forever; a zero-byte one, a TypeError."""
    fifo = tmp_path / "x.onnx"
    os.mkfifo(fifo)
    for command in (f"inspect {fifo}", f"validate {fifo} --attention eaa --dim 8 --hw 2x2", f"bench {fifo}"):
        assert_one_line_error(cli(command), "is not a regular file")
    empty = tmp_path / "z.onnx"
    empty.write_bytes(b"")
    for command in (
        f"inspect {empty}",
        f"validate {empty} --attention eaa --dim 8 --hw 2x2",
        f"bench {empty}",
    ):
        assert_one_line_error(cli(command), "z.onnx is empty")

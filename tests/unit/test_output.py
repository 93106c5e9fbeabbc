"""The output sink (``runs/output.py``): log files get the job's bytes exactly, the terminal gets text
decoded leniently (a character split between two writes stays whole), and the tail kept for error
messages is bounded whatever was written."""
import io

import pytest

from tg_pipeline.console import Console
from tg_pipeline.paths import RunPaths
from tg_pipeline.runs.output import TAIL_BYTES, OutputSink

STDOUT, STDERR = 1, 2


def sink(tmp_path, quiet=False, run_id='r1'):
    out, err = io.StringIO(), io.StringIO()
    paths = RunPaths(tmp_path / 'runs' / 'local')
    return OutputSink(paths, run_id, Console(quiet, out=out, err=err)), paths, out, err


def test_files_get_the_bytes_exactly_and_the_terminal_lenient_text(tmp_path):
    writer, paths, out, err = sink(tmp_path)
    euro = '€'.encode()  # three bytes, split over two writes
    with writer:
        writer.write(STDOUT, b'price: ' + euro[:1])
        writer.write(STDOUT, euro[1:] + b' \xff\xfe invalid\n')
        writer.write(STDERR, b'warn \xc3\n')  # a lone lead byte, then a newline
        writer.write(STDOUT, b'')
    assert paths.out('r1').read_bytes() == b'price: \xe2\x82\xac \xff\xfe invalid\n'
    assert paths.err('r1').read_bytes() == b'warn \xc3\n'
    assert out.getvalue() == 'price: € \ufffd\ufffd invalid\n'
    assert err.getvalue() == 'warn \ufffd\n'


def test_the_files_hold_each_write_at_once(tmp_path):
    """A reader of the .out file (another process following it) sees each write when it is made."""
    writer, paths, _, _ = sink(tmp_path, quiet=True)
    writer.write(STDOUT, b'first\n')
    assert paths.out('r1').read_bytes() == b'first\n'
    writer.close()
    writer.close()  # twice is harmless


def test_silent_prints_nothing_but_keeps_files_and_tail(tmp_path):
    writer, paths, out, err = sink(tmp_path, quiet=True)
    with writer:
        writer.write(STDOUT, b'a\n')
        writer.write(STDERR, b'b\n')
    assert (out.getvalue(), err.getvalue()) == ('', '')
    assert paths.out('r1').read_bytes() == b'a\n' and paths.err('r1').read_bytes() == b'b\n'
    assert writer.text() == 'a\nb\n'


@pytest.mark.parametrize('paths, run_id', [(None, 'r1'), ('given', '')])
def test_without_paths_or_run_id_no_file_is_written(tmp_path, paths, run_id):
    paths = RunPaths(tmp_path / 'runs') if paths else None
    out = io.StringIO()
    with OutputSink(paths, run_id, Console(out=out, err=io.StringIO())) as writer:
        writer.write(STDOUT, b'only here\n')
    assert out.getvalue() == 'only here\n' and not (tmp_path / 'runs').exists()


def test_the_tail_is_bounded_whatever_was_written(tmp_path):
    writer, paths, _, _ = sink(tmp_path, quiet=True)
    with writer:
        for n in range(50):
            writer.write(STDOUT if n % 2 else STDERR, (b'%05d ' % n) * 1000)
        writer.write(STDOUT, b'x' * (3 * TAIL_BYTES))
        writer.write(STDOUT, b'\nlast line \xff\n')
    assert TAIL_BYTES == 64 * 1024 and len(writer.tail) == TAIL_BYTES
    assert writer.text().endswith('x\nlast line \ufffd\n')
    assert paths.out('r1').stat().st_size == 25 * 6000 + 3 * TAIL_BYTES + 13  # the file keeps everything


def test_an_incomplete_character_at_the_end_shows_as_a_replacement(tmp_path):
    writer, paths, out, _ = sink(tmp_path)
    with writer:
        writer.write(STDOUT, b'cut short \xe2\x82')  # the job died mid-character
    assert paths.out('r1').read_bytes() == b'cut short \xe2\x82'
    assert out.getvalue() == 'cut short \ufffd'

"""Progress (tg_pipeline.console.progress): one updating line on a terminal, plain lines at most every few seconds
elsewhere, a summary as the step's note; figures formatted for people. A fake stream and an injected
clock stand in for the terminal and time."""
import io

import pytest

from tg_pipeline.console import progress
from tg_pipeline.console.progress import Progress, step_note, take_step_notes
from tg_pipeline.console.units import format_bytes, format_duration, format_eta


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def no_notes():
    take_step_notes()
    yield
    take_step_notes()


@pytest.mark.parametrize('n, text', [(0, '0 B'), (999, '999 B'), (5_900, '5.9 kB'), (637_000_000, '637.0 MB'),
                                     (1_204_000_000, '1.20 GB')])
def test_bytes_in_decimal_units_as_docker_prints_them(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize('seconds, text', [(0.314, '0.31 s'), (12.44, '12.4 s'), (125, '2 min 05 s'),
                                           (3725, '1 h 02 min'), (90061, '1 d 01 h')])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_whole_seconds_where_a_fraction_means_nothing():
    from tg_pipeline.console.units import format_duration
    assert [format_duration(s, whole=True) for s in (0.4, 42.9, 125.9)] == ['0 s', '42 s', '2 min 05 s']


def test_eta_in_whole_seconds():
    assert (format_eta(6.2), format_eta(0), format_eta(61)) == ('7 s', '0 s', '1 min 01 s')


def test_the_line_has_bytes_percent_rate_eta_and_the_note():
    clock = Clock()
    bar = Progress('push', total=637_000_000, out=io.StringIO(), clock=clock)
    clock.now += 10
    bar.set(200_000_000)
    bar.note('a1b2c3  Pushing')
    assert bar.line() == 'push  200.0 MB / 637.0 MB  31%  20.0 MB/s  ETA 22 s  (a1b2c3 Pushing)'


def test_without_a_total_or_bytes_it_shows_the_time_and_the_note():
    clock = Clock()
    bar = Progress('build', unit='', out=io.StringIO(), clock=clock)
    clock.now += 3.5
    bar.note('Collecting numpy==1.26.4')
    assert bar.line() == 'build  3.50 s  (Collecting numpy==1.26.4)'
    bar.update(3)
    assert bar.line() == 'build  3  (Collecting numpy==1.26.4)'  # a count: no rate, no ETA


def test_not_a_terminal_prints_a_plain_line_at_most_every_interval_then_a_summary():
    clock, out = Clock(), io.StringIO()
    with Progress('pull', total=100_000_000, out=out, clock=clock) as bar:
        for _ in range(24):  # 12 s, a chunk every 0.5 s
            clock.now += 0.5
            bar.update(4_000_000)
    lines = out.getvalue().splitlines()
    assert lines == ['pull  40.0 MB / 100.0 MB  40%  8.0 MB/s  ETA 8 s',
                     'pull  80.0 MB / 100.0 MB  80%  8.0 MB/s  ETA 3 s',
                     'pull  96.0 MB in 12.0 s, 8.0 MB/s']
    assert take_step_notes() == ['96.0 MB in 12.0 s, 8.0 MB/s']


def test_not_a_terminal_and_quick_prints_nothing_but_notes_the_summary():
    clock, out = Clock(), io.StringIO()
    with Progress('push', out=out, clock=clock) as bar:
        clock.now += 1
        bar.update(5_900)
    assert out.getvalue() == ''
    assert take_step_notes() == ['5.9 kB in 1.00 s, 5.9 kB/s']


def test_a_terminal_gets_one_line_redrawn_in_place_and_erased_at_the_end():
    clock, out = Clock(), Terminal()
    bar = Progress('push', total=10_000_000, out=out, clock=clock)
    for _ in range(5):
        clock.now += 0.06  # a redraw at most every 0.1 s: the 1st, 3rd and 5th update
        bar.update(1_000_000)
    drawn = out.getvalue()
    assert '\n' not in drawn and drawn.count('\r') == 3  # the first at once, then at most every 0.1 s
    assert drawn.rsplit('\r', 1)[1].startswith('push  5.0 MB / 10.0 MB  50%')
    bar.close()
    assert out.getvalue().endswith('\r' + ' ' * len(drawn.rsplit('\r', 1)[1]) + '\r')
    assert take_step_notes() == ["5.0 MB in 0.30 s"]


def test_keep_prints_the_summary_as_a_line_of_its_own_instead_of_a_note():
    clock, out = Clock(), Terminal()
    with Progress('pull', out=out, clock=clock, keep=True) as bar:
        clock.now += 2
        bar.update(2_000_000)
    assert out.getvalue().endswith('\rpull  2.0 MB in 2.00 s, 1.0 MB/s\n')
    assert take_step_notes() == []


def test_silent_prints_and_notes_nothing_and_a_failure_leaves_no_summary():
    clock, out = Clock(), Terminal()
    with Progress('push', out=out, clock=clock, silent=True) as bar:
        clock.now += 6
        bar.update(1)
    assert out.getvalue() == '' and take_step_notes() == []
    with pytest.raises(RuntimeError):
        with Progress('push', out=out, clock=clock) as bar:
            bar.update(1)
            raise RuntimeError('the push failed')
    assert out.getvalue().endswith('\r') and take_step_notes() == []


def test_a_broken_stream_never_fails_the_operation():
    out = Terminal()
    out.close()
    with Progress('push', out=out) as bar:
        bar.update(1)


def test_step_notes_are_short_unique_and_bounded():
    step_note('code layer\n only')
    step_note('code layer only')
    assert take_step_notes() == ['code layer only'] and take_step_notes() == []
    for i in range(progress.MAX_NOTES + 5):
        step_note(f'note {i}')
    assert len(take_step_notes()) == progress.MAX_NOTES


def test_the_transfer_summary_counts_bytes_as_push_and_pull_do():
    from tg_pipeline.image.transfer import TransferStats
    assert TransferStats(layers_total=6, layers_sent=1, bytes_sent=22_200).summary() == \
        '1 of 6 layers sent, 22.2 kB over SSH'
    assert TransferStats(layers_total=6, layers_sent=2, bytes_sent=71_000_000).summary() == \
        '2 of 6 layers sent, 71.0 MB over SSH'

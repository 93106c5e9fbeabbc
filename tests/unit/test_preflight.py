"""`doit check_remote`'s checks: any failure is a [FAIL] line of its own, never a traceback."""
import io

import requests

from tg_pipeline.console import Console
from tg_pipeline.errors import PipelineError
from tg_pipeline.workflow import preflight


class CutEngine:
    def version(self):
        raise requests.exceptions.ChunkedEncodingError('Connection broken: IncompleteRead(0 bytes read)')


class Remote:
    name = 'me@gpu-box:22'
    closed = False

    def __init__(self, docker):
        self._docker = docker

    @property
    def docker(self):  # as the real one: the engine's client is made (and may fail) when first asked for
        if isinstance(self._docker, Exception):
            raise self._docker
        return self._docker

    def close(self):
        self.closed = True


def checked(monkeypatch, opened):
    monkeypatch.setattr(preflight, 'open_remote', lambda target: opened())
    out = io.StringIO()
    failed = preflight.check_remote(target=None, registry='', console=Console(out=out))
    return failed, out.getvalue().splitlines()


def test_an_answer_cut_in_the_middle_is_a_failed_check_and_the_checks_after_it_are_left_out(monkeypatch):
    remote = Remote(CutEngine())
    failed, lines = checked(monkeypatch, lambda: remote)
    assert failed == 1
    assert lines == ['[ OK ] ssh login: me@gpu-box:22',
                     '[FAIL] docker on the remote: ChunkedEncodingError: Connection broken: IncompleteRead(0 bytes read)',
                     '[SKIP] registry: no [registry] address configured',
                     '1 check(s) failed']
    assert remote.closed


def test_a_login_refused_says_our_error_with_its_tip(monkeypatch):
    def refused():
        raise PipelineError('SSH login as me to gpu-box was refused', hint='ssh-copy-id me@gpu-box')
    failed, lines = checked(monkeypatch, refused)
    assert failed == 1
    assert lines[:2] == ['[FAIL] ssh login: SSH login as me to gpu-box was refused', '       TIP: ssh-copy-id me@gpu-box']


def test_an_engine_that_refuses_this_user_is_a_failed_check(monkeypatch):
    remote = Remote(PipelineError('user me may not use Docker on gpu-box', hint='sudo usermod -aG docker me'))
    failed, lines = checked(monkeypatch, lambda: remote)
    assert failed == 1
    assert lines[1:3] == ['[FAIL] docker on the remote: user me may not use Docker on gpu-box',
                          '       TIP: sudo usermod -aG docker me']

"""The wire under :class:`fakes.engine.FakeEngine`: a ``requests`` adapter that answers without a socket.

A reply is written out as the bytes an engine sends (status line, headers, then a body that is
``Transfer-Encoding: chunked`` for streams) and read back by the standard library's
``http.client.HTTPResponse`` and by ``urllib3.HTTPResponse``, exactly as on a real connection; so
``response.raw`` is a real urllib3 response and docker-py's stream helpers run unchanged. Only the
socket is fake: :class:`EngineSide` makes the reply's bytes on demand from a generator, which is how
a followed log stream can end (and its container exit) only when the client reads that far.
"""
from __future__ import annotations

import http
import http.client
import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import requests.adapters
import urllib3

API_VERSION = '1.41'
ENGINE_HEADERS = {'Api-Version': API_VERSION, 'Docker-Experimental': 'false', 'Ostype': 'linux',
                  'Server': 'Docker/20.10.24 (linux)'}


@dataclass
class Call:
    """One request as the fake engine received it (``FakeEngine.calls``)."""
    method: str
    path: str  # unquoted, without the ``/v1.41`` prefix: '/containers/create'
    params: dict  # query values as strings; a list when the key was repeated
    body: Any  # decoded JSON, raw bytes (a build context), or None
    headers: dict = field(default_factory=dict)
    version: str | None = None  # the API version in the URL, None for unversioned calls (/version)

    def json_param(self, name: str, default=None):
        """A query value that docker-py sends as JSON (``filters``, ``labels``, ``buildargs``)."""
        value = self.params.get(name)
        return default if value in (None, '') else json.loads(value)

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query value: docker-py sends 1/0, True/False or true/false."""
        value = self.params.get(name)
        return default if value is None else str(value).lower() in ('1', 'true', 'yes')


def parse_call(request: requests.PreparedRequest) -> Call:
    parts = urlsplit(request.url)
    path, version = unquote(parts.path), None
    head, _, rest = path[1:].partition('/')
    if head.startswith('v') and head[1:].replace('.', '').isdigit():
        path, version = '/' + rest, head[1:]
    params = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    body = request.body
    if hasattr(body, 'read'):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    if body and 'json' in request.headers.get('Content-Type', ''):
        body = json.loads(body)
    headers = {k: v.decode('latin-1') if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return Call(request.method, path, params, body or None, headers, version)


class Reply:
    """An HTTP reply of the fake engine: a whole body, or a stream of pieces sent chunked."""

    def __init__(self, status: int = 200, body: bytes = b'', content_type: str | None = 'application/json',
                 headers: dict | None = None, pieces: Iterable[bytes] | None = None):
        self.status, self.body, self.pieces = status, body, pieces
        self.headers = dict(ENGINE_HEADERS)
        if content_type:
            self.headers['Content-Type'] = content_type
        self.headers.update(headers or {})

    @classmethod
    def json(cls, value, status: int = 200) -> 'Reply':
        return cls(status, json.dumps(value).encode() + b'\n')

    @classmethod
    def error(cls, status: int, message: str) -> 'Reply':
        """An engine error: docker-py maps it to APIError / NotFound / ImageNotFound with ``explanation``."""
        return cls.json({'message': message}, status)

    @classmethod
    def empty(cls, status: int = 204) -> 'Reply':
        return cls(status, b'', content_type=None)

    @classmethod
    def stream(cls, pieces: Iterable[bytes], content_type: str, headers: dict | None = None) -> 'Reply':
        return cls(200, content_type=content_type, headers=headers, pieces=pieces)

    @classmethod
    def events(cls, events: Iterable[dict]) -> 'Reply':
        """A JSON progress stream (build, push, pull): one event per line and per chunk."""
        return cls.stream((json.dumps(e).encode() + b'\r\n' for e in events), 'application/json')

    def wire(self) -> Iterator[bytes]:
        """The bytes on the connection, made lazily: a streamed body only as far as it is read."""
        reason = http.HTTPStatus(self.status).phrase
        headers = dict(self.headers)
        if self.pieces is None:
            headers['Content-Length'] = str(len(self.body))
        else:
            headers['Transfer-Encoding'] = 'chunked'
        head = f'HTTP/1.1 {self.status} {reason}\r\n' + ''.join(f'{k}: {v}\r\n' for k, v in headers.items())
        yield head.encode('latin-1') + b'\r\n'
        if self.pieces is None:
            if self.body:
                yield self.body
            return
        for piece in self.pieces:
            if piece:  # an empty chunk would end the body
                yield b'%x\r\n' % len(piece) + piece + b'\r\n'
        yield b'0\r\n\r\n'


class EngineSide(io.RawIOBase):
    """The engine's end of the connection: ``response.raw._fp.fp.raw`` of every reply.

    docker-py's ``_get_raw_response_socket`` returns this object (and sets ``_response`` on it);
    ``_disable_socket_timeout`` calls :meth:`settimeout`/:meth:`gettimeout` on it.
    """

    def __init__(self, pieces: Iterator[bytes]):
        super().__init__()
        self._pieces, self._pending = pieces, b''
        self.timeout: float | None = 60.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._pieces)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def gettimeout(self) -> float | None:
        return self.timeout

    def close(self) -> None:
        close = getattr(self._pieces, 'close', None)
        if close:  # a generator left unread runs no further
            close()
        super().close()


class _Socket:
    """What ``http.client.HTTPResponse`` needs of a socket: ``makefile``."""

    def __init__(self, pieces: Iterator[bytes]):
        self.side = EngineSide(pieces)

    def makefile(self, mode: str = 'rb', *args, **kwargs):
        return io.BufferedReader(self.side)


class FakeAdapter(requests.adapters.HTTPAdapter):
    """Mounted on the real APIClient: every request goes to ``handle`` (the engine), none to a socket."""

    def __init__(self, handle: Callable[[Call], Reply]):
        super().__init__()
        self.handle = handle

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        reply = self.handle(parse_call(request))
        parsed = http.client.HTTPResponse(_Socket(reply.wire()), method=request.method)
        parsed.begin()
        headers = urllib3.HTTPHeaderDict()
        for key, value in parsed.getheaders():
            headers.add(key, value)
        raw = urllib3.HTTPResponse(body=parsed, headers=headers, status=parsed.status, version=parsed.version,
                                   version_string='HTTP/1.1', reason=parsed.reason, preload_content=False,
                                   decode_content=False, original_response=parsed, request_method=request.method,
                                   request_url=request.url)
        return self.build_response(request, raw)

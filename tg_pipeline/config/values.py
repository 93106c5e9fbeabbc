"""What ``[run]`` and a job's table say beyond CPU and memory: GPUs, shared memory, IPC, host folders, caches,
ports, env files and a time limit. Each value's check (a field's ``check`` metadata, see
:mod:`tg_pipeline.config.build`) and its parsed form for the runs (:mod:`tg_pipeline.runs.resources`).

Every check returns None, or ``(problem, hint)`` with a value that works when pasted (and, for a table, the
entry it is about).
"""
from __future__ import annotations

import re
from typing import Mapping, NamedTuple

GPU_FORMS = ('"all", a count (gpus = 2), or device ids (gpus = "0,2"; one device by its id: gpus = "device=1"); '
             '0 or "" = none')
_DEVICE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]*')
_CACHE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*')
_IP = re.compile(r'\d{1,3}(\.\d{1,3}){3}')


class GPUs(NamedTuple):
    count: int  # type: ignore[assignment]  # -1: all of them (the field hides tuple.count, on purpose)
    device_ids: tuple

    @property
    def wanted(self) -> bool:
        return bool(self.count or self.device_ids)


def parse_gpus(text) -> GPUs:
    """``gpus`` as a count (-1 = all) or device ids; ValueError when it is neither."""
    text = str(text).strip()
    if text in ('', '0'):
        return GPUs(0, ())
    if text == 'all':
        return GPUs(-1, ())
    if text.isdigit():
        return GPUs(int(text), ())
    explicit = text.startswith('device=')
    ids = tuple(text[len('device='):].split(',') if explicit else text.split(','))
    if (explicit or len(ids) > 1) and all(_DEVICE.fullmatch(i) for i in ids):
        return GPUs(0, ids)
    raise ValueError(f'gpus = {text!r} is not {GPU_FORMS}')


def check_gpus(value, dotted: str):
    try:
        parse_gpus(value)
    except ValueError:
        return f'{dotted} = {value!r} is not {GPU_FORMS}', f'e.g. {dotted.rpartition(".")[2]} = "all"'
    return None


class Mount(NamedTuple):
    host: str
    container: str
    read_only: bool

    def text(self) -> str:
        return f'{self.host}:{self.container}:{"ro" if self.read_only else "rw"}'


def parse_mount(text: str) -> Mount:
    """``HOST_PATH:CONTAINER_PATH[:ro|:rw]`` (read-only unless ``:rw``); ValueError otherwise."""
    parts = text.split(':')
    mode = parts.pop() if len(parts) == 3 else 'ro'
    if len(parts) != 2 or mode not in ('ro', 'rw') or not all(p.startswith('/') for p in parts):
        raise ValueError(f'{text!r} is not HOST_PATH:CONTAINER_PATH[:ro|:rw] with absolute paths')
    host, container = (p.rstrip('/') or '/' for p in parts)
    if container == '/' or container == '/tg_pipeline' or container.startswith('/tg_pipeline/'):
        raise ValueError(f'{text!r} mounts over {container}, which the container needs itself')
    return Mount(host, container, mode == 'ro')


def check_mounts(value, dotted: str):
    for item in value:
        try:
            parse_mount(item)
        except ValueError as e:
            return (f'{dotted}: {e}', f'e.g. {dotted.rpartition(".")[2]} = ["/data/imagenet:/data:ro"] '
                                      f'(the host path on the host where the job runs; ":rw" to allow writes)')
    return None


def mount_place(text: str):
    """(``/data`` mounted, the mount) for a list's uniqueness (a field's ``unique``), or None when no mount."""
    try:
        mount = parse_mount(text)
    except ValueError:
        return None
    return f'container path {mount.container}', mount


def check_caches(value: Mapping, dotted: str):
    for name, path in value.items():
        if not _CACHE_NAME.fullmatch(name) or not str(path).startswith('/'):
            return (f'{dotted}.{name} = {path!r}: a cache is NAME = "/absolute/path/in/the/container", the name '
                    f'letters, digits, "_", "." or "-"',
                    f'e.g. {dotted.rpartition(".")[2]} = {{ huggingface = "/root/.cache/huggingface" }}', name)
    return None


class Port(NamedTuple):
    ip: str
    host_port: int
    port: int


def parse_port(text: str) -> Port:
    """``PORT``, ``HOST_PORT:PORT`` or ``IP:HOST_PORT:PORT`` (the IP defaults to 127.0.0.1)."""
    parts = str(text).strip().split(':')
    ip = parts.pop(0) if len(parts) == 3 else '127.0.0.1'
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() for p in parts) or not _IP.fullmatch(ip):
        raise ValueError(f'{text!r} is not PORT, HOST_PORT:PORT or IP:HOST_PORT:PORT')
    host, port = int(parts[0]), int(parts[-1])
    if not (0 < port < 65536 and 0 < host < 65536):
        raise ValueError(f'{text!r}: ports are 1 to 65535')
    return Port(ip, host, port)


def check_ports(value, dotted: str):
    for item in value:
        try:
            parse_port(item)
        except ValueError as e:
            return f'{dotted}: {e}', f'e.g. {dotted.rpartition(".")[2]} = ["6006", "8888:8888"]'
    return None


def port_place(text: str):
    """(the host address a port is published on, the port) for a list's uniqueness, or None when no port."""
    try:
        port = parse_port(text)
    except ValueError:
        return None
    return f'host port {port.ip}:{port.host_port}', port
DESTINATION_HINT = 'e.g. host = "gpu-box" (a Host alias of ~/.ssh/config) or "ssh://me@gpu-box:2222"'


def split_destination(text: str) -> tuple[str, str, int]:
    """(user, host, port) of ``host``, ``user@host`` or ``ssh://[user@]host[:port]`` (empty/0: not given);
    ValueError for anything else (a port that is no number from 1 to 65535, ``host:port`` without ``ssh://``)."""
    text = str(text).strip()
    rest, uri = (text[len('ssh://'):].rstrip('/'), True) if text.startswith('ssh://') else (text, False)
    user, _, hostport = rest.rpartition('@')
    host, port = hostport, ''
    if uri and hostport.startswith('['):
        host, _, port = hostport[1:].partition(']')
        port = port.lstrip(':')
    elif uri and hostport.count(':') == 1:
        host, _, port = hostport.partition(':')
    if not host or (port and not port.isdigit()) or any(c.isspace() for c in text):
        raise ValueError(f'remote host {text!r} is not host, user@host or ssh://user@host:port')
    if port and not 0 < int(port) < 65536:
        raise ValueError(f'remote host {text!r}: the port {port} is not 1 to 65535')
    if not uri and host.count(':') == 1:  # an IPv6 address has several
        name, _, port = host.partition(':')
        raise ValueError(f'remote host {text!r} puts a port after the name, which ssh would take as part of the '
                         f'name; a port goes in ssh://{user + "@" if user else ""}{name}:{port} (or port in [remote])')
    return user, host, int(port or 0)


def check_destination(value, dotted: str):
    """[remote] host: a form ssh takes (see :func:`split_destination`); '' (none) too."""
    if not value:
        return None
    try:
        split_destination(value)
    except ValueError as e:
        return str(e), DESTINATION_HINT
    return None


def check_port_number(value, dotted: str):
    """A TCP port: 1 to 65535 (0: not set)."""
    if value and not 0 < value < 65536:
        key = dotted.rpartition(".")[2]
        return f'{dotted} = {value} is no TCP port (1 to 65535)', f'e.g. {key} = 22 (0: the one of ~/.ssh/config)'
    return None


def check_registry(value, dotted: str):
    """[registry] address: a registry host (with a "." or a ":port", or localhost), an optional port and path,
    as Docker takes it in an image reference; '' (none) too."""
    from tg_pipeline.config.names import registry_problem
    problem = value and registry_problem(value)
    if problem:
        return (f'{dotted} = {value!r} is no registry address: {problem}',
                f'e.g. {dotted.rpartition(".")[2]} = "registry.example.com:5000" (or "localhost:5000")')
    return None


def check_secret_names(value, dotted: str):
    """secret_env: names of environment variables."""
    for name in value:
        if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name):
            return (f'{dotted}: {name!r} is no environment variable name (letters, digits and "_")',
                    f'e.g. {dotted.rpartition(".")[2]} = ["API_TOKEN"]')
    return None


def check_together(values: Mapping, prefix: str):
    """Settings that exclude each other."""
    both = [n for n in values.get('secret_env') or () if n in (values.get('env') or ())]
    if both:
        return (f'{prefix}: {", ".join(both)} in both env and secret_env: through env its value would be in the '
                f'container\'s config (docker inspect)', f'keep {"it" if len(both) == 1 else "them"} in secret_env '
                                                          f'only')
    if values.get('ipc') == 'host' and values.get('shm_gb'):
        return (f'{prefix}: shm_gb = {values["shm_gb"]:g} has no effect with ipc = "host" (the job shares the '
                f'host\'s /dev/shm)', 'drop one of them: shm_gb=0 or ipc=""')
    return None


def read_env_file(path) -> dict[str, str]:
    """The ``NAME=value`` lines of an env file, in python-dotenv's syntax (``export``, quotes, ``#`` comments,
    escapes in double quotes, a quoted value over several lines), without its ``${VAR}`` expansion: a value is
    sent as written. ValueError naming ``file:line`` for a line that is no ``NAME=value``."""
    from tg_pipeline.compat.dotenv import bindings
    values = {}
    with open(path, encoding='utf-8') as stream:
        for binding in bindings(stream):
            if binding.name is None and not binding.bad:  # a comment or a blank line
                continue
            if binding.bad or binding.value is None or binding.name is None or \
                    not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', binding.name):
                raise ValueError(f'{path}:{binding.line}: not NAME=value')
            values[binding.name] = binding.value
    return values

"""The protocol between tg_pipeline (the host) and the entry point in the container.

Every name both sides use lives here: the environment variables the host sets, the run folder and
the files the entry point leaves in it, and the marker lines that carry a run folder through the
log where it cannot be copied back (swarm tasks, on any node). Standard library only: this module
is copied into each job package (``MODULE._tg_runtime.protocol``) and imported by the host
(``tg_pipeline.runtime.protocol``).

Run folder (``ENV_RUN_DIR``, ``RUN_DIR`` in tg_pipeline's containers)::

    result.pkl      the job's return value (pickle, or cloudpickle when plain pickle fails)
    traceback.txt   the traceback, when the job raised
    result.json     {"type": NAME}: the return value's type, to sum a large value up without loading it
    exit.json       {"exit_code": N, "reason": "ok" | "exception" | "sys.exit" | "timeout" | "result not kept"},
                    always (with "error": why, for a return value that cannot be pickled)
    output/         where the job may write (``ENV_OUTPUT`` tells it the path)

Log copies (``LOG_DIR``, beside the run folder in tg_pipeline's container runs, not in swarm tasks, which send
their folder back): ``stdout`` and ``stderr`` byte for byte as the job wrote them, and ``digest.json`` with
their sizes and sha256 once the job ended (see :func:`.entry.run_teed`); that digest is also left in the run folder
as ``RUN_LOG_DIGEST``, so the host gets it with the run folder in one request (and keeps it out of its copy).

Marker line: ``TG_PIPELINE_FILE <index> <name> <part>/<parts> <base64 chunk>``.
"""
from __future__ import annotations

import base64
import binascii
import re

LABEL = 'tg_pipeline'  # prefix of the labels on images, containers and services (tg_pipeline.job, ...)
RUN_DIR = '/tg_pipeline/run'  # the run folder in tg_pipeline's containers

ENV_RUN_DIR = 'TG_PIPELINE_RUN_DIR'  # where the entry point keeps the run's files
ENV_RUN_ID = 'TG_PIPELINE_RUN_ID'  # the host's id of this run
ENV_OUTPUT = 'TG_PIPELINE_OUTPUT'  # the job's output folder (default: RUN_DIR/output)
ENV_SEND_BACK = 'TG_PIPELINE_SEND_BACK'  # non-empty: print the run folder as marker lines at the end
ENV_SLOT = 'TG_PIPELINE_SLOT'  # the swarm task slot, which picks the sweep variant
ENV_MAX_RUNTIME = 'TG_PIPELINE_MAX_RUNTIME_S'  # seconds the job may run; the entry point stops it then
ENV_SECRETS = 'TG_PIPELINE_SECRETS'  # names of secret_env variables, comma-separated; values come apart (stdin)
ENV_SECRETS_DIR = 'TG_PIPELINE_SECRETS_DIR'  # where the values are files (swarm: /run/secrets), instead of stdin
SWARM_SECRETS_DIR = '/run/secrets'
ENV_STOP_GRACE = 'TG_PIPELINE_STOP_GRACE_S'  # seconds between SIGTERM and SIGKILL at the time limit (default 5)
ENV_HOST_OWNER = 'TG_PIPELINE_HOST_OWNER'  # "UID:GID": the run folder and LOG_DIR are folders of the host (bind
# mounts of a local run); when the job ended, the entry point hands what is in them to that owner

LOG_DIR = '/tg_pipeline/logs'  # the copies in tg_pipeline's containers (outside RUN_DIR: fetched only when needed)
LOG_STREAMS = ('stdout', 'stderr')  # their file names in LOG_DIR
LOG_DIGEST = 'digest.json'  # {"stdout": {"size": N, "sha256": HEX}, "stderr": {...}}, once the job ended
RUN_LOG_DIGEST = '.tg_log_digest.json'  # the same digest in the run folder (when there is one); not collected

RESULT_FILE = 'result.pkl'
RESULT_INFO_FILE = 'result.json'
TRACEBACK_FILE = 'traceback.txt'
OUTPUT_DIR = 'output'
EXIT_FILE = 'exit.json'

# reasons in EXIT_FILE
REASON_OK = 'ok'  # run() returned (or the job called sys.exit(0) / sys.exit(None))
REASON_EXCEPTION = 'exception'  # the job raised (KeyboardInterrupt too: exit code 130)
REASON_SYS_EXIT = 'sys.exit'  # the job called sys.exit with a failing status
REASON_TIMEOUT = 'timeout'  # stopped at its time limit (ENV_MAX_RUNTIME); EXIT_FILE also holds max_runtime_s
REASON_RESULT = 'result not kept'  # run() returned a value that cannot be pickled; EXIT_FILE also holds its error
RESULT_NOT_KEPT_EXIT_CODE = 1  # the job ran, but what it returned cannot reach the caller: a failure
TIMEOUT_EXIT_CODE = 124  # as timeout(1)

# in the job package MODULE/
META_FILE = '_tg_meta.json'  # {"module", "package", "roots", "version"}
RUNTIME_PACKAGE = '_tg_runtime'  # this folder's copy
RESOURCES_DIR = 'resources'  # the pickled payload objects: NAME.pkl

FILE_MARKER = 'TG_PIPELINE_FILE'
SEND_BACK_FILE = 'run.tar.gz'  # the name the run folder travels under in marker lines
MARKER_SIZE = 8000  # base64 characters per marker line

_MARKER = re.compile(r'^' + FILE_MARKER + r' (\d+) (\S+) (\d+)/(\d+) ([A-Za-z0-9+/=]*)$')


def marker_lines(index: int, name: str, data: bytes, size: int = MARKER_SIZE) -> list[str]:
    """``data`` as marker lines of at most ``size`` base64 characters each (one line for no data)."""
    if not name or any(c.isspace() for c in name):
        raise ValueError(f'a marker file name must be non-empty without spaces: {name!r}')
    if index < 0 or size < 1:
        raise ValueError(f'index must be >= 0 and size >= 1 (index={index}, size={size})')
    encoded = base64.b64encode(bytes(data)).decode('ascii')
    parts = max(1, -(-len(encoded) // size))
    return [f'{FILE_MARKER} {index} {name} {part + 1}/{parts} {encoded[part * size:(part + 1) * size]}'
            for part in range(parts)]


def marker_parts(size: int, chunk: int = MARKER_SIZE) -> tuple[int, int]:
    """(bytes per part, number of parts) for ``size`` bytes sent in marker lines of ``chunk`` base64
    characters (a multiple of 4), as :func:`marker_lines` cuts them: so a file can be sent part by part."""
    raw = chunk // 4 * 3
    return raw, max(1, -(-size // raw))


def marker_line(index: int, name: str, part: int, parts: int, data: bytes) -> str:
    """One marker line: part ``part`` of ``parts`` (from 1) of a file, ``data`` its bytes."""
    return f'{FILE_MARKER} {index} {name} {part}/{parts} {base64.b64encode(bytes(data)).decode("ascii")}'


def parse_marker(line: str) -> tuple[int, str, int, int, str] | None:
    """(index, name, part, parts, chunk) of a marker line (line end ignored), or None for any other line."""
    found = _MARKER.match(line.rstrip('\r\n'))
    if not found:
        return None
    index, name, part, parts, chunk = found.groups()
    if not 1 <= int(part) <= int(parts):
        return None
    return int(index), name, int(part), int(parts), chunk


def join_markers(parts: dict[int, str], total: int) -> bytes:
    """The bytes of one file from its chunks by part number (1 to ``total``); ValueError when incomplete."""
    missing = [part for part in range(1, total + 1) if part not in parts]
    if total < 1 or missing:
        raise ValueError(f'marker parts missing: {missing or "all"} of {total}')
    try:
        return base64.b64decode(''.join(parts[part] for part in range(1, total + 1)), validate=True)
    except binascii.Error as e:
        raise ValueError(f'marker data is not valid base64: {e}') from None

"""The names a user gives that end up in Docker references, pip metadata and file names: their checks, and
the valid value a TIP proposes instead.

* a **repository** (``[image_prefix]PACKAGE``): optionally a registry host (a first part with ``.`` or
  ``:``, or ``localhost``), then path components of lowercase letters and digits, joined by ``.``,
  ``_``, ``__`` or dashes, separated by ``/`` (Docker's reference grammar);
* a **version** is both a Docker tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``) and a PEP 440 version
  (pip's), so ``1.0.0-beta+x`` (a ``+``) and ``1:2`` are refused, and no version holds a ``/``;
* a **job name** is ASCII letters, digits, ``_`` and ``-``: a folder under ``build/`` and a doit task name.

Each ``*_problem`` function returns None for a valid value, else what is wrong with it (a phrase).
"""
from __future__ import annotations

import re
import unicodedata

from packaging.version import InvalidVersion, Version

COMPONENT = r'[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
_COMPONENT = re.compile(COMPONENT)
_DOMAIN = re.compile(r'(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*'
                     r'(?::[0-9]+)?')
_TAG = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}')
_PREFIX_END = re.compile(COMPONENT + r'(?:[._]|__|-+)?')
_JOB = re.compile(r'[A-Za-z_][A-Za-z0-9_-]*')
MAX_REPOSITORY = 255
COMPONENT_TEXT = 'lowercase letters and digits, joined by ".", "_", "__" or "-" (no separator at either end)'
COMPONENT_RULE = COMPONENT_TEXT + ', parts separated by "/"'
FALLBACK_VERSION = '0.1.0'


def _ascii(text: str) -> str:
    """``text`` without accents and other non-ASCII characters (``Jöb`` -> ``Job``)."""
    return unicodedata.normalize('NFKD', text).encode('ascii', 'ignore').decode('ascii')


def _is_domain(part: str) -> bool:
    return '.' in part or ':' in part or part == 'localhost'


def repository_problem(name: str) -> str | None:
    """What makes ``name`` no Docker repository name (``team/train``, ``host:5000/train``), or None."""
    if not name:
        return 'it is empty'
    if len(name) > MAX_REPOSITORY:
        return f'it is longer than the {MAX_REPOSITORY} characters Docker allows'
    parts = name.split('/')
    if len(parts) > 1 and _is_domain(parts[0]):
        if not _DOMAIN.fullmatch(parts[0]):
            return f'{parts[0]!r} is no registry host (letters, digits, "-" and ".", then an optional :port)'
        parts = parts[1:]
    for part in parts:
        if not _COMPONENT.fullmatch(part):
            return (f'the part {part!r} is not ' + COMPONENT_RULE) if part else 'it has an empty part ("//" or a "/" at an end)'
    return None


def registry_problem(address: str) -> str | None:
    """What makes ``address`` (``host[:port][/path]``) no registry address Docker pushes to, or None: its first
    part must be a host (Docker reads ``team/x`` as a Docker Hub repository), with a port from 1 to 65535."""
    head = address.rstrip('/').split('/')[0]
    if not _is_domain(head):
        return (f'{head!r} is no registry host (it needs a "." or a ":port", or is localhost; Docker would read it as '
                f'a Docker Hub account)')
    port = head.rpartition(':')[2] if ':' in head else ''
    if port.isdigit() and not 0 < int(port) < 65536:
        return f'the port {port} is not 1 to 65535'
    problem = repository_problem(address.rstrip('/') + '/x')
    return problem.replace(" (or is empty)", '') if problem else None


def component_problem(text: str) -> str | None:
    """What makes ``text`` no single part of an image name (a package: ``train``, ``my-job``), or None."""
    return None if _COMPONENT.fullmatch(text) else f'an image name part is {COMPONENT_TEXT}'


def component(text: str) -> str:
    """A valid repository path component made from ``text`` (``My Job!`` -> ``my-job``)."""
    lowered = re.sub(r'[^a-z0-9]+', '-', _ascii(text).lower()).strip('-')
    return lowered or 'job'


def proposed_prefix(prefix: str) -> str:
    """A valid image_prefix close to ``prefix`` (``Team/`` -> ``team/``), or '' when none is close."""
    parts = prefix.split('/')
    head = [parts.pop(0)] if len(parts) > 1 and _is_domain(parts[0]) else []
    fixed = [re.sub(r'[^a-z0-9._-]+', '-', _ascii(p).lower()) for p in parts]
    fixed = [p.strip('._-') for p in fixed[:-1]] + [re.sub(r'^[._-]+', '', fixed[-1])]
    candidate = '/'.join(head + [p for p in fixed[:-1] if p] + fixed[-1:])
    return candidate if prefix_problem(candidate) is None else ''


def prefix_problem(prefix: str) -> str | None:
    """What makes ``prefix`` + a package name no repository name, or None (``''``, ``team-``, ``team/``)."""
    if not prefix:
        return None
    *whole, start = prefix.split('/')
    if '' in whole:
        return 'it has an empty part ("//" or a "/" at the start)'
    if whole:
        problem = repository_problem('/'.join(whole))
        if problem:
            return problem
    if start and not _PREFIX_END.fullmatch(start):
        return f'its last part {start!r} does not begin a name part: ' + COMPONENT_RULE
    return None


def version_problem(version: str) -> str | None:
    """What makes ``version`` no Docker tag or no PEP 440 version, or None."""
    if not version:
        return 'it is empty'
    tag = _TAG.fullmatch(version)
    try:
        Version(version)
    except InvalidVersion:
        return 'it is no PEP 440 version (pip reads versions like 1.2.0, 1.2.0rc1, 2.0.post1)' + (
            '' if tag else ' nor a Docker tag (letters, digits, "_", "." and "-")')
    if not tag:
        return ('it is no Docker tag: a tag holds only letters, digits, "_", "." and "-" (at most 128, not starting '
                'with "." or "-")')
    return None


def proposed_version(version: str) -> str:
    """A valid version close to ``version`` (``1.0.0-beta+x`` -> ``1.0.0b0``, ``1:2`` -> ``1.2``)."""
    for candidate in (version, re.sub(r'[^A-Za-z0-9]+', '.', _ascii(version)).strip('.')):
        try:
            public = Version(candidate).public
        except InvalidVersion:
            continue
        if version_problem(public) is None:
            return public
    return FALLBACK_VERSION


def valid_job_name(name: str) -> bool:
    return bool(_JOB.fullmatch(name))


def proposed_job_name(name: str) -> str:
    fixed = re.sub(r'[^A-Za-z0-9_-]+', '_', _ascii(name)).strip('_-')
    fixed = fixed if fixed and (fixed[0].isalpha() or fixed[0] == '_') else 'Job' + fixed
    return fixed


def reference_problem(reference: str) -> str | None:
    """What makes ``reference`` (``name`` or ``name:tag``) no image reference Docker takes, or None."""
    name, tag = reference, ''
    last = reference.rsplit('/', 1)[-1]
    if ':' in last:
        name, tag = reference[:len(reference) - len(last)] + last.split(':', 1)[0], last.split(':', 1)[1]
        if not _TAG.fullmatch(tag):
            return f'its tag {tag!r} holds more than letters, digits, "_", "." and "-" (or is empty)'
    problem = repository_problem(name)
    return f'its name {name!r}: {problem}' if problem else None


def proposed_reference(reference: str) -> str:
    """A valid image reference close to ``reference`` (``Team/X:1+2`` -> ``team/x:1``)."""
    last = reference.rsplit('/', 1)[-1]
    name, tag = reference, ''
    if ':' in last:
        name, tag = reference[:len(reference) - len(last)] + last.split(':', 1)[0], last.split(':', 1)[1]
    parts = name.split('/')
    head = [parts.pop(0)] if len(parts) > 1 and _is_domain(parts[0]) and _DOMAIN.fullmatch(parts[0]) else []
    fixed = '/'.join(head + [component(p) for p in parts if p] or ['job'])
    if tag and not _TAG.fullmatch(tag):
        tag = proposed_version(tag)
    return f'{fixed}:{tag}' if tag else fixed

"""pip requirements (PEP 508), parsed in this one place with ``packaging`` (plain ones, which it surely accepts, are
only matched by :data:`PLAIN` when the configuration is checked: a run then does not import it).

pipeline.toml's ``dependencies`` are checked here when the configuration is
read, the image's requirements.txt is made here, and the import check asks
here for the distribution a requirement names.
"""
from __future__ import annotations

import re
from typing import Iterable

from tg_pipeline.errors import ConfigError

_NAME = r'[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?'
_CLAUSE = r'(?:(?:==|!=|<=|>=|<|>)[0-9]+(?:\.[0-9]+)*|~=[0-9]+(?:\.[0-9]+)+)'
# The plain requirements most projects list ("numpy", "scikit-learn==1.5.2", "torch[cuda]>=2.1,<3"): a subset of
# PEP 508 that packaging accepts (a test holds the two together); anything else is parsed by packaging.
PLAIN = re.compile(rf'{_NAME}(?:\[{_NAME}(?:,{_NAME})*\])?(?:{_CLAUSE}(?:,{_CLAUSE})*)?')


# packaging, imported on first use: a run with no requirement to parse starts without it (about 10 ms). The two
# names below are what requirement_name uses; the import check's script defines its own (packaging's).
def Requirement(text: str):  # noqa: N802 - stands for packaging's class
    """packaging's ``Requirement(text)``."""
    from packaging.requirements import Requirement as parsed
    return parsed(text)


def canonicalize_name(name: str) -> str:
    """packaging's ``canonicalize_name(name)``."""
    from packaging.utils import canonicalize_name as canonical
    return canonical(name)


def requirement_name(text):
    """``"Tabulate[widechars]==0.9.0"`` -> ``"tabulate"``: the canonical distribution name (as pip compares them).

    Raises ``InvalidRequirement`` (a ``ValueError``) when ``text`` is not a PEP 508 requirement.
    Self-contained on purpose: the import check runs its source in a fresh interpreter.
    """
    return canonicalize_name(Requirement(text).name)


def check_requirements(dependencies: Iterable[str], *, key: str, file: str | None = None,
                       line: int | None = None) -> None:
    """Raise :class:`ConfigError` naming ``key`` (and file/line) at the first requirement pip would refuse."""
    dependencies = [text for text in dependencies if not (isinstance(text, str) and PLAIN.fullmatch(text))]
    if not dependencies:
        return
    from packaging.requirements import InvalidRequirement
    for text in dependencies:
        try:
            Requirement(text)
        except InvalidRequirement as e:
            raise ConfigError(f'{text!r} in {key} is not a valid requirement: {_first_line(e)}', file=file,
                              key=key, line=line,
                              hint='write each one as pip does, e.g. "numpy", "numpy>=1.24", "torch==2.1.0" '
                                   'or "name @ https://host/name.whl"') from None


def image_requirements(dependencies: Iterable[str], cloudpickle_version: str) -> list[str]:
    """The image's requirements: the declared ones, after ``cloudpickle==<local version>`` unless they name it.

    Payloads pickled by value need the cloudpickle that wrote them; a declared cloudpickle
    requirement (of any form, e.g. ``cloudpickle~=3.0``) is the user's choice and stays the only one.
    """
    dependencies = list(dependencies)
    if any(requirement_name(d) == 'cloudpickle' for d in dependencies):
        return dependencies
    return [f'cloudpickle=={cloudpickle_version}', *dependencies]


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

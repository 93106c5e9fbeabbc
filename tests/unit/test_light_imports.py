"""Listing tasks and a run with nothing to rebuild load no SSH library and no Jinja: the doit process imports
paramiko and fabric only for a remote host, and jinja2 only to render a template (``python -X importtime`` lists
every module a process imports)."""
from __future__ import annotations

from conftest import HEAVY, imported_tops


def test_doit_list_loads_no_ssh_and_no_jinja(project):
    assert imported_tops(project, 'list') & HEAVY == set()


def test_doit_help_of_a_run_step_loads_no_ssh_and_no_jinja(project):
    assert imported_tops(project, 'help', 'run_remote') & HEAVY == set()

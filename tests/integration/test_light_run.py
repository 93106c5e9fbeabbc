"""A run_local with nothing to rebuild imports no SSH library and no Jinja in the doit process (see
tests/unit/test_light_imports.py for the commands that need no engine)."""
from conftest import HEAVY, imported_tops


def test_a_no_change_run_local_loads_no_ssh_and_no_jinja(project, docker_client):
    project.doit('run_local', 'job=ExampleJob')
    tops = imported_tops(project, 'run_local', 'job=ExampleJob')
    assert 'docker' in tops  # it did reach the engine
    assert tops & HEAVY == set()

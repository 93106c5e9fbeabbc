"""The run lifecycle with no engine: `doit config` of a job masks secret-looking values. (Runs, detach, status,
logs, stop, result, Ctrl-C, a dropped connection, OOM, cleanup: tests/integration/test_lifecycle.py.)"""


def test_config_task_masks_secret_looking_values(project):
    shown = project.doit('config', 'job=SecretSleep', env={'SECRET_TOKEN': 'hunter2-value',
                                                           'EXAMPLE_VARIABLE': 'visible-value'})
    assert "env.SECRET_TOKEN = '***'" in shown.stdout
    assert "env.EXAMPLE_VARIABLE = 'visible-value'" in shown.stdout
    assert 'hunter2-value' not in shown.stdout + shown.stderr

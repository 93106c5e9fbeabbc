"""The command-line settings as doit params (``tg_pipeline.workflow.params``): every setting of pipeline.toml is listed
with what it does, each task lists its own controls, and a setting given doit's way (``--memory=0.5``) counts
like ``memory=0.5``."""
import pytest

from tg_pipeline.workflow import params
from tg_pipeline.config.schema import CONTROL_VARS, SECTIONS, _specs, aliases, job_specs
from tg_pipeline.config.build import from_mapping
from tg_pipeline.errors import ConfigError


def test_every_setting_says_what_it_does():
    every = {f'{name}.{key}': spec for name, cls in SECTIONS.items() for key, spec in _specs(cls).items()}
    assert [dotted for dotted, spec in every.items() if not spec.meta.get('help')] == []  # the field's help
    assert [key for key, spec in job_specs().items() if not spec.meta.get('help')] == []
    assert set(params.CONTROLS) <= CONTROL_VARS
    assert set(aliases().values()) <= set(every)


def test_each_task_lists_its_controls_then_every_setting(tmp_path):
    config = from_mapping({'run': {'memory_gb': 0.5}, 'jobs': {'Train': {'factory': 'jobs.t:T', 'args': [3]}}},
                          path=tmp_path / 'pipeline.toml')
    settings = params.settings(config, 'Train')
    status = params.for_task('status', settings, ['Train'])
    assert [p['name'] for p in status[:6]] == ['job', 'where', 'run_id', 'all_projects', 'variant', list(aliases())[0]]
    assert [p['type'] for p in status[:4]] == [str, str, str, bool]  # all_projects is a flag: --all_projects
    names = [p['name'] for p in settings]
    assert names[:len(aliases())] == list(aliases())
    assert {f'{s}.{k}' for s, cls in SECTIONS.items() for k in _specs(cls)} <= set(names)
    assert [n for n in names if n.startswith('jobs.')] == [f'jobs.Train.{k}' for k in job_specs()]
    memory = next(p for p in settings if p['name'] == 'run.memory_gb')
    assert memory['help'] == 'memory limit in GB, 0 = none; now 0.5 (Python API)'
    assert [p['name'] for p in params.settings(config, None) if p['name'].startswith('jobs.')] == ['jobs.NAME.KEY']


@pytest.mark.parametrize('argv, expected', [
    (['run_local', '--memory=2', '--cpu', '3', '--detach'], {'memory': '2', 'cpu': '3', 'detach': '1'}),
    (['run_local:T', '--jobs.T.kwargs.lr', '0.1', '--run.env=A,B'], {'jobs.T.kwargs.lr': '0.1', 'run.env': 'A,B'}),
    (['-v', '2', 'run_local', '--memory'], {}),  # no value: doit says so
    (['list', '--all', '--verbosity', '2', '--db-file', 'x'], {'all': '1'}),  # doit's own options are not ours
])
def test_settings_given_doits_way(argv, expected):
    assert params.command_line({'job': 'T'}, argv) == {'job': 'T', **expected}


def test_a_setting_given_both_ways_differently_is_refused():
    assert params.command_line({'memory': '2'}, ['--memory=2']) == {'memory': '2'}
    with pytest.raises(ConfigError) as info:
        params.command_line({'memory': '1'}, ['run_local', '--memory', '2'])
    assert info.value.render() == ("ERROR: key 'memory': memory is given twice: memory=1 and --memory=2\n"
                                   'TIP: give it once: doit run_local memory=2')
    with pytest.raises(ConfigError) as info:
        params.command_line({'run.cpu': '1'}, ['-v', '0', 'run_local', '--run.cpu=3', 'run.cpu=1', 'run.env=A,B'])
    assert info.value.hint == "give it once: doit -v 0 run_local run.env=A,B run.cpu=3"

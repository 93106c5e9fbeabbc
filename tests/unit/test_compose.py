"""The job image without docker build (image/compose.py): the code layer from the sdist, the config over the
dependency image's, the load archive; and where build_on comes from (no Docker)."""
import gzip
import hashlib
import io
import json
import tarfile
import textwrap

import pytest

from tg_pipeline import Containering, Packaging, SSHDockerConfig, SSHDockerOptions, config
from tg_pipeline.api import pipeline_config
from tg_pipeline.console import Console
from tg_pipeline.errors import ConfigError
from tg_pipeline.image.compose import Composed, code_layer, image_config, load_archive
from tg_pipeline.image.job_image import deps_tag
from tg_pipeline.package.sdist import make_sdist

DEPS = {
    'Id': 'sha256:' + 'd' * 64, 'Architecture': 'amd64', 'Os': 'linux',
    'Config': {'Env': ['PATH=/usr/bin', 'PYTHONUNBUFFERED=0'], 'Cmd': ['python3'], 'WorkingDir': '/work',
               'Labels': {'tg_pipeline.project': 'p-1', 'tg_pipeline.deps': 'Train', 'team': 'vision'}},
    'RootFS': {'Type': 'layers', 'Layers': ['sha256:' + 'a' * 64, 'sha256:' + 'b' * 64]},
}
HISTORY = [  # newest first, as the engine answers
    {'Created': 1700000300, 'CreatedBy': '/bin/sh -c #(nop)  LABEL tg_pipeline.deps=Train', 'Size': 0},
    {'Created': 1700000200, 'CreatedBy': '/bin/sh -c pip install -r requirements.txt', 'Size': 1200},
    {'Created': 1700000100, 'CreatedBy': '', 'Size': 191000, 'Comment': 'Imported from -'},
]
SETTINGS = dict(labels={'tg_pipeline.project': 'p-1', 'tg_pipeline.job': 'Train', 'tg_pipeline.module': 'train__1'},
                env={'PYTHONPATH': '/opt/tg_pipeline/train__1-1', 'PYTHONUNBUFFERED': '1'},
                cmd=['python', '-m', 'train__1'])


@pytest.fixture
def sdist(tmp_path):
    root = tmp_path / 'src' / 'jobs'
    root.mkdir(parents=True)
    (root / '__init__.py').write_text('')
    (root / 'train.py').write_text('class Train:\n    def run(self):\n        return 1\n')
    return make_sdist(tmp_path / 'context', 'train', '1', 'train__1', [root], {'job': b'payload'})


def test_code_layer_is_the_sdist_under_opt_and_reproducible(sdist, tmp_path):
    diff_id = code_layer(sdist, tmp_path / 'layer.tar')
    data = (tmp_path / 'layer.tar').read_bytes()
    assert diff_id == 'sha256:' + hashlib.sha256(data).hexdigest()
    with tarfile.open(tmp_path / 'layer.tar') as tar:
        names = tar.getnames()
        assert names[:2] == ['opt', 'opt/tg_pipeline']
        assert 'opt/tg_pipeline/train__1-1/train__1/jobs/train.py' in names
        assert all(n == 'opt' or n.startswith('opt/') for n in names) and {m.uid for m in tar.getmembers()} == {0}
    assert code_layer(sdist, tmp_path / 'again.tar') == diff_id  # same sdist, same layer


def test_config_takes_the_dependency_image_and_adds_the_job(tmp_path):
    config = json.loads(image_config(DEPS, HISTORY, 'sha256:' + 'c' * 64, created='2026-01-01T00:00:00Z', **SETTINGS))
    assert config['rootfs']['diff_ids'] == [*DEPS['RootFS']['Layers'], 'sha256:' + 'c' * 64]
    assert config['config']['Image'] == DEPS['Id'] and config['config']['WorkingDir'] == '/work'
    assert config['config']['Env'] == ['PATH=/usr/bin', 'PYTHONPATH=/opt/tg_pipeline/train__1-1', 'PYTHONUNBUFFERED=1']
    assert config['config']['Cmd'] == ['python', '-m', 'train__1']
    assert config['config']['Labels'] == {'tg_pipeline.project': 'p-1', 'team': 'vision', 'tg_pipeline.job': 'Train',
                                          'tg_pipeline.module': 'train__1'}  # the dependency image's own label goes
    history = config['history']
    assert [bool(h.get('empty_layer')) for h in history] == [False, False, True, False]
    assert history[0]['comment'] == 'Imported from -' and history[-1]['created_by'] == 'tg_pipeline: code layer train__1'


def test_history_that_does_not_account_for_the_layers_is_left_out():
    short = HISTORY[:1]  # one empty entry for two layers
    config = json.loads(image_config(DEPS, short, 'sha256:' + 'c' * 64, created='2026-01-01T00:00:00Z', **SETTINGS))
    assert [h['created_by'] for h in config['history']] == ['tg_pipeline: code layer train__1']


def test_same_inputs_same_image_id_and_any_change_another():
    def image_id(**changes):
        values = {**SETTINGS, 'created': '2026-01-01T00:00:00Z', **changes}
        body = image_config(DEPS, HISTORY, 'sha256:' + 'c' * 64, **values)
        return Composed(body, None, 'sha256:' + 'c' * 64, ()).image_id
    assert image_id() == image_id()
    assert len({image_id(), image_id(created='2026-01-02T00:00:00Z'), image_id(cmd=['python', '-m', 'other'])}) == 3


def test_load_archive_holds_the_config_and_the_code_layer_only(sdist, tmp_path):
    diff_id = code_layer(sdist, tmp_path / 'layer.tar')
    body = image_config(DEPS, HISTORY, diff_id, created='2026-01-01T00:00:00Z', **SETTINGS)
    image = Composed(body, tmp_path / 'layer.tar', diff_id, tuple(DEPS['RootFS']['Layers']))
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(load_archive(image, 'train:1')))) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(files.pop('manifest.json'))
    config_name = image.image_id.split(':')[1] + '.json'
    assert files == {config_name: body, 'code/layer.tar': (tmp_path / 'layer.tar').read_bytes()}
    assert manifest == [{'Config': config_name, 'RepoTags': ['train:1'],
                         'Layers': ['a' * 64 + '/layer.tar', 'b' * 64 + '/layer.tar', 'code/layer.tar']}]


def test_dependency_image_tag():
    assert deps_tag('team-train:1.0') == 'team-train:1.0-deps'
    assert deps_tag('registry:5000/train:1.0') == 'registry:5000/train:1.0-deps'


def load(tmp_path, text, **overrides):
    path = tmp_path / 'pipeline.toml'
    path.write_text(textwrap.dedent(text))
    return config.load(path, overrides=overrides, environ={})


JOBS = '[jobs.A]\nfactory = "jobs.a:A"\n\n[jobs.B]\nfactory = "jobs.b:B"\nbuild_on = "local"\n'


def test_build_on_from_docker_a_job_and_the_command_line(tmp_path):
    found = load(tmp_path, '[docker]\nbuild_on = "remote"\n\n' + JOBS)
    assert (found.job('A').build_on, found.job('B').build_on) == ('remote', 'local')
    assert load(tmp_path, JOBS).job('A').build_on == 'local'  # the default
    forced = load(tmp_path, JOBS, build_on='remote')
    assert (forced.job('A').build_on, forced.job('B').build_on) == ('remote', 'remote')
    with pytest.raises(ConfigError) as info:
        load(tmp_path, '[docker]\nbuild_on = "gpu-box"\n\n' + JOBS)
    assert 'build_on must be "local" or "remote"' in info.value.message


def test_build_on_from_the_python_api(tmp_path):
    packaging = Packaging('train', '1.0', dict(job=len))
    packaging.build_dir = str(tmp_path / 'build')
    containering = Containering.from_packaging(packaging)
    assert pipeline_config(SSHDockerConfig(packaging, containering, SSHDockerOptions()), []).job('train').build_on \
        == 'local'
    containering.build_on = 'remote'
    assert pipeline_config(SSHDockerConfig(packaging, containering, SSHDockerOptions()), []).job('train').build_on \
        == 'remote'


@pytest.fixture
def job_paths(engine, sdist, tmp_path):
    """A job's build folder with its Dockerfile, requirements and sdist; the base image on ``engine``."""
    import shutil
    from tg_pipeline.paths import JobPaths
    engine.add_image('python:3.11-slim', layers=3)
    paths = JobPaths(tmp_path / 'build', 'Train', 'train__1', '1')
    paths.context.mkdir(parents=True)
    (paths.context / 'Dockerfile').write_text('FROM python:3.11-slim\nLABEL tg_pipeline.deps="Train"\n')
    (paths.context / 'requirements.txt').write_text('')
    shutil.copy(sdist, paths.sdist)
    return paths


def test_an_engine_that_refuses_the_load_gets_the_code_layer_by_a_build(engine, client, job_paths):
    from tg_pipeline.image.job_image import build_job_image, record_image, recorded_composed
    paths = job_paths
    said = io.StringIO()
    image = build_job_image(client, paths, 'train:1', SETTINGS, console=Console(out=said, err=said, tty=False))
    assert image.composed is None and image.deps_built
    assert 'this engine could not load the job image: ' in said.getvalue()  # said, not a silent slow path
    assert 'the engine builds the code layer from the sdist instead' in said.getvalue()
    deps, code = engine.builds[-2:]
    assert set(deps.files) == {'Dockerfile', 'requirements.txt'}  # the sdist stays out of the dependency build
    assert set(code.files) == {'Dockerfile', 'train__1-1.tar.gz'}
    assert code.dockerfile.startswith(f'FROM {deps.image_id}\n') and code.image_id == image.image_id
    assert 'ADD train__1-1.tar.gz /opt/tg_pipeline/' in code.dockerfile
    assert client.images.get(image.image_id).labels['tg_pipeline.job'] == 'Train'
    record_image(paths, image, 'train:1')
    assert json.loads(paths.image.read_text()) == {'image_id': image.image_id, 'tag': 'train:1'}
    assert recorded_composed(paths) is None  # not ours to load elsewhere: a remote gets it by docker save


def test_composed_for_the_remote_only_is_not_loaded_here_and_stays_current_while_its_deps_image_is(
        engine, client, job_paths):
    """load_here=False (a registry-free run_remote alone): no load is asked of this engine (this fake one would
    refuse it and force a build), the composition is recorded, and it is current until the dependency image
    it stands on is gone from this engine."""
    from tg_pipeline.image.job_image import build_job_image, composed_up_to_date, record_image, recorded_composed
    paths = job_paths
    image = build_job_image(client, paths, 'train:1', SETTINGS, console=Console(quiet=True), load_here=False)
    assert image.composed is not None and len(engine.builds) == 1  # the dependency image only
    assert image.image_id not in engine.images
    record_image(paths, image, 'train:1')
    assert recorded_composed(paths).image_id == image.image_id
    assert composed_up_to_date(client, paths)
    client.images.remove(engine.builds[0].image_id, force=True)
    assert not composed_up_to_date(client, paths)


def test_the_entry_points_modules_go_compiled_and_python_takes_them(sdist, tmp_path):
    import subprocess
    import sys
    code_layer(sdist, tmp_path / 'layer.tar')
    with tarfile.open(tmp_path / 'layer.tar') as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / 'root', filter='tar')
    package = 'opt/tg_pipeline/train__1-1/train__1'
    tag = sys.implementation.cache_tag
    compiled = sorted(n for n in names if n.endswith('.pyc'))
    assert len(names) == len(set(names))  # an engine refuses a layer that names a path twice
    assert f'{package}/__pycache__/__init__.{tag}.pyc' in compiled
    assert f'{package}/_tg_runtime/__pycache__/entry.{tag}.pyc' in compiled
    assert not any('/jobs/' in n for n in compiled)  # the job's own modules: source only
    found = subprocess.run([sys.executable, '-B', '-v', '-c', 'import train__1._tg_runtime.entry'],
                           env={'PYTHONPATH': str(tmp_path / 'root' / 'opt/tg_pipeline/train__1-1')},
                           capture_output=True, text=True, check=True).stderr
    assert f"code object from '{tmp_path / 'root' / package}/_tg_runtime/__pycache__/entry.{tag}.pyc'" in found
    edited = tmp_path / 'root' / package / '_tg_runtime' / 'entry.py'
    edited.write_text(edited.read_text() + 'VALUE = 1\n')  # a source the .pyc is not of: Python compiles it
    found = subprocess.run([sys.executable, '-B', '-v', '-c', 'import train__1._tg_runtime.entry as e; print(e.VALUE)'],
                           env={'PYTHONPATH': str(tmp_path / 'root' / 'opt/tg_pipeline/train__1-1')},
                           capture_output=True, text=True, check=True)
    assert found.stdout == '1\n' and f'code object from {edited}\n' in found.stderr


def test_two_processes_compose_the_same_layer_from_the_same_sdist(sdist, tmp_path):
    """Two clones, or two doit processes, name the same code by the same image id: the compiled modules' bytes do
    not depend on the process (its hash seed, what else it imported)."""
    import os
    import subprocess
    import sys
    here = code_layer(sdist, tmp_path / 'here.tar')
    script = ('import sys, json, decimal, email.message; from pathlib import Path; '
              'from tg_pipeline.image.compose import code_layer; '
              'print(code_layer(Path(sys.argv[1]), Path(sys.argv[2])))')
    for seed in ('1', '4242'):
        there = subprocess.run([sys.executable, '-c', script, str(sdist), str(tmp_path / f'there-{seed}.tar')],
                               env={**os.environ, 'PYTHONHASHSEED': seed},
                               capture_output=True, text=True, check=True).stdout.strip()
        assert there == here

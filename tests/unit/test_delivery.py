"""The delivery decision (image/delivery.py): which build steps each run step waits for, and the registry name."""
import pytest

from tg_pipeline.image.delivery import Delivery, by_digest


@pytest.mark.parametrize('build_on, transfer, remote, swarm', [
    ('local', 'registry', ['push:T'], ['push:T']),
    ('local', 'ssh', ['build_image:T'], ['push:T']),
    ('remote', 'registry', ['sdist:T', 'dockerfile:T'], ['sdist:T', 'dockerfile:T']),
    ('remote', 'ssh', ['sdist:T', 'dockerfile:T'], ['sdist:T', 'dockerfile:T']),
])
def test_each_run_step_waits_for_what_its_delivery_needs(build_on, transfer, remote, swarm):
    delivery = Delivery('T', 't:1', build_on, transfer, 'registry.example:5000')
    assert delivery.needs('run_local') == ['build_image:T']  # a local run always builds here
    assert delivery.needs('run_remote') == remote
    assert delivery.needs('run_swarm') == swarm


def test_the_transfer_defaults_to_the_registry_when_there_is_one():
    from tg_pipeline import config
    from pathlib import Path
    data = {'jobs': {'T': {'factory': 'jobs.t:T'}}}
    without = config.from_mapping(data, path=Path('/p/pipeline.toml'), origin='test')
    assert Delivery.of(without, 'T').transfer == 'ssh'
    registry = config.from_mapping({**data, 'registry': {'address': 'r:5000'}}, path=Path('/p/pipeline.toml'))
    assert Delivery.of(registry, 'T').transfer == 'registry'
    assert Delivery.of(registry, 'T').registry_reference() == 'r:5000/t:0.0.0'
    chosen = config.from_mapping({**data, 'registry': {'address': 'r:5000'}, 'remote': {'transfer': 'ssh'}},
                                 path=Path('/p/pipeline.toml'))
    assert Delivery.of(chosen, 'T').transfer == 'ssh'


def test_a_swarm_run_needs_a_registry_and_pins_the_digest():
    from tg_pipeline.errors import ConfigError
    with pytest.raises(ConfigError, match='run_swarm needs a \\[registry\\] address'):
        Delivery('T', 't:1', 'local', 'ssh', '').check_swarm()
    assert by_digest('r:5000/t:1', 'sha256:ab') == 'r:5000/t@sha256:ab'

"""Swarm runs with no engine: which task of a variant's slot judges it. (On a real swarm:
tests/integration/test_swarm.py; over the fake engine: test_swarm_fake.py.)"""


def test_each_variant_is_judged_by_its_first_ended_task():
    """The engine may start a failed slot again: a completed task wins, else the first that ended."""
    from tg_pipeline.runs.swarm import chosen_tasks

    def task(slot, state, created):
        return {'ID': f'{slot}-{created}', 'Slot': slot, 'CreatedAt': created, 'Status': {'State': state}}
    tasks = [task(2, 'failed', '1'), task(2, 'pending', '2'), task(1, 'complete', '1'), task(3, 'running', '1'),
             task(0, 'failed', '1'), task(0, 'complete', '2'), task(4, 'failed', '1'), task(4, 'failed', '2')]
    chosen = {slot: t['ID'] for slot, t in chosen_tasks(tasks).items()}
    assert chosen == {2: '2-1', 1: '1-1', 3: '3-1', 0: '0-2', 4: '4-1'}
    zero = task(0, 'complete', '1')
    del zero['Slot']  # the API leaves a zero slot out
    assert list(chosen_tasks([zero])) == [0]

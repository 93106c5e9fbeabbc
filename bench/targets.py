"""Issue 24's targets, evaluated from one run's figures, and our own time above the stack's parts for each path.

Targets (ratios within one run, on a stock-sshd remote; a ratio to a floor is the median of each run's ratio to a
floor run just before it, where the row was measured so, see bench.py's ``measure``):
- remote code edit, with the registry and with transfer=ssh: <= 1.3x the ssh floor (which logs in every time);
- `doit status|logs|result where=remote` while the shared connection is open: <= 0.6x the ssh floor; the first
  command after it ended pays one login, no more (<= the same command warm + the login (k) + 0.05 s);
- local code edit <= 2.0x, nothing changed <= 1.7x the local floor; the same with 2,000 more modules (m);
- with 2,000 more modules a one-file edit costs <= 1.2x the example tree's edit, locally and remotely (both
  transfers), and sends <= that file's compressed size + what the example tree's edit sends (its fixed per-run
  bytes, that same file's included);
- our own time (a path's median less the (k) parts it cannot avoid) <= 0.05 s on each path.
"""
from __future__ import annotations

OWN_LIMIT = 0.05

# path -> (its row, the (k) parts it cannot avoid on this stack, the floor its target is a ratio of)
_REMOTE_EDIT = ['k_python_doit_docker', 'k_ssh_channel', 'k_load_remote', 'k_engine_run_remote', 'k_archive_remote']
PATHS = {
    'local no-change': ('b_local_unchanged', ['k_python_doit_docker', 'k_engine_run_local'], 'a_floor_local'),
    'local code edit': ('c_local_code_edit', ['k_python_doit_docker', 'k_load_local', 'k_engine_run_local'],
                        'a_floor_local'),
    'remote code edit (ssh)': ('d_remote_code_edit_ssh', _REMOTE_EDIT, 'a_floor_remote'),
    'remote code edit (registry)': ('d_remote_code_edit', [
        'k_python_doit_docker', 'k_ssh_channel', 'k_load_local', 'k_push', 'k_pull_remote', 'k_engine_run_remote',
        'k_archive_remote'], 'a_floor_remote'),
    'remote status (shared connection)': ('l_status_remote', ['k_python_doit_docker', 'k_ssh_channel'],
                                          'a_floor_remote'),
    'remote logs (shared connection)': ('l_logs_remote', ['k_python_doit_docker', 'k_ssh_channel'], 'a_floor_remote'),
    'remote result (shared connection)': ('l_result_remote', ['k_python_doit_docker', 'k_ssh_channel'],
                                          'a_floor_remote'),
    '2,000 modules: local no-change': ('m_big_local_unchanged', ['k_python_doit_docker', 'k_engine_run_local'],
                                       'a_floor_local'),
    '2,000 modules: local code edit': ('m_big_local_code_edit', ['k_python_doit_docker', 'k_load_local',
                                                                 'k_engine_run_local'], 'a_floor_local'),
    '2,000 modules: remote code edit (ssh)': ('m_big_remote_code_edit_ssh', _REMOTE_EDIT, 'a_floor_remote'),
}


def _median(rows: dict, key: str):
    return rows.get(key, {}).get('median_s')


def _ratio(rows: dict, key: str, ref: str, limit: float, text: str) -> dict:
    """``key``'s median over ``ref``'s; against a floor, the median of the ratios of each run to the floor run
    just before it when the row has them (``paired``, see bench.py's measure), the medians' ratio beside it."""
    value, base = _median(rows, key), _median(rows, ref)
    if value is None or not base:
        return {'target': text, 'met': None, 'figures': 'not measured'}
    row = rows[key]
    if row.get('median_paired_ratio') is not None and ref == f'a_floor_{row.get("paired_floor")}':
        paired = row['median_paired_ratio']
        return {'target': text, 'met': paired <= limit, 'value': paired, 'limit': limit,
                'figures': f'{paired:.2f}x paired; medians {value / base:.2f}x = {value:.3f} s / {base:.3f} s'}
    return {'target': text, 'met': value <= limit * base, 'value': value / base, 'limit': limit,
            'figures': f'{value / base:.2f}x = {value:.3f} s / {base:.3f} s'}


def _one_login(rows: dict) -> dict:
    text = 'first status after the connection ended <= warm + one login + 0.05 s'
    cold, warm, login = (_median(rows, k) for k in ('l_status_remote_cold', 'l_status_remote', 'k_ssh_login'))
    if None in (cold, warm, login):
        return {'target': text, 'met': None, 'figures': 'not measured'}
    limit = warm + login + 0.05
    return {'target': text, 'met': cold <= limit, 'value': cold, 'limit': limit,
            'figures': f'{cold:.3f} s, limit {limit:.3f} s = {warm:.3f} + login {login:.3f} + 0.05'}


def _bytes(rows: dict, key: str, ref: str, text: str) -> dict:
    row, base = rows.get(key, {}), rows.get(ref, {})
    if 'median_bytes_to_remote' not in row or 'median_bytes_to_remote' not in base:
        return {'target': text, 'met': None, 'figures': 'not measured'}
    sent, file = row['median_bytes_to_remote'], row.get('edited_file_gz_bytes', 0)
    limit = base['median_bytes_to_remote'] + file
    return {'target': text, 'met': sent <= limit, 'value': sent, 'limit': limit,
            'figures': f'{sent / 1e3:.1f} kB, limit {limit / 1e3:.1f} kB = example tree edit '
                       f'{base["median_bytes_to_remote"] / 1e3:.1f} + file gz {file / 1e3:.1f}'}


def targets(rows: dict) -> list[dict]:
    """Issue 24's targets from this run's medians: met True/False, or None where a figure is missing."""
    found = [
        _ratio(rows, 'd_remote_code_edit', 'a_floor_remote', 1.3, 'remote code edit, registry <= 1.3x ssh floor'),
        _ratio(rows, 'd_remote_code_edit_ssh', 'a_floor_remote', 1.3, 'remote code edit, ssh <= 1.3x ssh floor'),
        *(_ratio(rows, f'l_{c}_remote', 'a_floor_remote', 0.6, f'doit {c} where=remote (shared) <= 0.6x ssh floor')
          for c in ('status', 'logs', 'result')),
        _one_login(rows),
        _ratio(rows, 'c_local_code_edit', 'a_floor_local', 2.0, 'local code edit <= 2.0x local floor'),
        _ratio(rows, 'b_local_unchanged', 'a_floor_local', 1.7, 'local no-change <= 1.7x local floor'),
        _ratio(rows, 'm_big_local_code_edit', 'a_floor_local', 2.0, '2,000 modules: local code edit <= 2.0x floor'),
        _ratio(rows, 'm_big_local_unchanged', 'a_floor_local', 1.7, '2,000 modules: local no-change <= 1.7x floor'),
        _ratio(rows, 'm_big_local_code_edit', 'c_local_code_edit', 1.2,
               '2,000 modules: local edit <= 1.2x the example tree\'s'),
        _ratio(rows, 'm_big_remote_code_edit', 'd_remote_code_edit', 1.2,
               '2,000 modules: remote edit, registry <= 1.2x the example\'s'),
        _ratio(rows, 'm_big_remote_code_edit_ssh', 'd_remote_code_edit_ssh', 1.2,
               '2,000 modules: remote edit, ssh <= 1.2x the example\'s'),
        _bytes(rows, 'm_big_remote_code_edit', 'd_remote_code_edit',
               '2,000 modules: bytes of an edit, registry <= file gz + example\'s'),
        _bytes(rows, 'm_big_remote_code_edit_ssh', 'd_remote_code_edit_ssh',
               '2,000 modules: bytes of an edit, ssh <= file gz + example\'s'),
    ]
    for name, own in own_times(rows).items():
        text = f'our own time, {name} <= {OWN_LIMIT} s'
        found.append({'target': text, 'met': None, 'figures': 'not measured'} if own is None else
                     {'target': text, 'met': own <= OWN_LIMIT, 'value': own, 'limit': OWN_LIMIT,
                      'figures': f'{own:.3f} s'})
    return found


def own_times(rows: dict) -> dict:
    """Path -> its median less the (k) parts it cannot avoid (None where a figure is missing)."""
    found = {}
    for name, (row, parts, _) in PATHS.items():
        values = [_median(rows, k) for k in [row, *parts]]
        found[name] = None if None in values else values[0] - sum(values[1:])
    return found


def targets_table(found: list[dict]) -> str:
    lines = [f'{"target (issue 24)":72} {"":8}  figures', '-' * 110]
    for target in found:
        verdict = {True: 'met', False: 'NOT MET', None: '-'}[target['met']]
        lines.append(f'{target["target"]:72} {verdict:8}  {target["figures"]}')
    return '\n'.join(lines)


def own_table(rows: dict) -> str:
    """For each path: its median, the (k) parts it cannot avoid (and what they alone are of the path's floor: a
    ratio target below that cannot be met by any code of ours), and what is left: our own time."""
    lines = [f'{"our own time above the stack (k)":40} {"measured":>9} {"parts":>8} {"x floor":>7} {"ours":>8}   parts',
             '-' * 110]
    for name, (row, parts, floor) in PATHS.items():
        values = [_median(rows, k) for k in [row, *parts]]
        base = _median(rows, floor)
        if None in values or not base:
            lines.append(f'{name:40} {"-":>9}')
            continue
        lines.append(f'{name:40} {values[0]:8.3f}s {sum(values[1:]):7.3f}s {sum(values[1:]) / base:7.2f} '
                     f'{values[0] - sum(values[1:]):7.3f}s   = '
                     + ' + '.join(f'{k[2:]} {v:.3f}' for k, v in zip(parts, values[1:])))
    return '\n'.join(lines)

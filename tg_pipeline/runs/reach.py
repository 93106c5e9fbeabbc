"""Reaching a running job: ``doit exec`` (a command in its container, its output and exit code) and
``doit forward`` (a local port to a port of its container, until Ctrl-C), over any backend that has
``exec``/``forward`` (container runs; a swarm run says it has not).

On a remote host both ride on the run's one SSH connection: exec is the Docker exec API through the remote
client; a forwarded connection is an SSH ``direct-tcpip`` channel to the container's address on the remote
engine's bridge network (a local run's container is reached at its address directly).
"""
from __future__ import annotations

import socket
import threading
import time

from tg_pipeline.compat.docker import exec_frames
from tg_pipeline.console import CONSOLE, Console
from tg_pipeline.errors import PipelineError

CHUNK = 64 * 1024


# --- container runs ------------------------------------------------------------------------------------
def exec_in_container(client, handle, command: str, console: Console = CONSOLE) -> int:
    """``sh -c COMMAND`` in the container, its output streamed as it comes; its exit code."""
    created = client.api.exec_create(handle.ref, ['sh', '-c', command], stdout=True, stderr=True)
    for stream, data in exec_frames(client, created['Id']):
        console.write(data.decode('utf-8', 'replace'), err=stream == 2)
    for _ in range(50):  # the engine records the exit code a moment after the stream ends
        code = client.api.exec_inspect(created['Id']).get('ExitCode')
        if code is not None:
            return code
        time.sleep(0.1)
    return -1


def container_address(client, handle) -> str:
    """The container's address on its network (the engine's bridge)."""
    settings = client.api.inspect_container(handle.ref).get('NetworkSettings') or {}
    addresses = [settings.get('IPAddress')] + [n.get('IPAddress') for n in (settings.get('Networks') or {}).values()]
    address = next((a for a in addresses if a), None)
    if not address:
        raise PipelineError(f'run {handle.run_id} has no network address on {handle.host} (network mode none or host?)',
                            hint='with the host\'s network, reach its port on the host itself')
    return address


def forward_to_container(backend, handle, port: int, local_port: int, console: Console = CONSOLE) -> None:
    """Listen on 127.0.0.1:``local_port``; each connection goes to the container's ``port`` (over the SSH
    connection for a remote host) until Ctrl-C, or until the run ends."""
    address = container_address(backend.client, handle)
    if backend.remote:
        connection = backend.place.connection

        def connect():
            return connection.forward_channel(address, port, ('127.0.0.1', local_port))
    else:
        def connect():
            return socket.create_connection((address, port), timeout=10)
    listener = _listen(local_port, handle)
    console.print(f'Forwarding 127.0.0.1:{local_port} -> port {port} of run {handle.run_id} ({handle.host}, '
                  f'container {handle.name} at {address}); Ctrl-C stops')
    try:
        _serve(listener, connect, lambda: backend.refresh(handle).running, console)
        console.print(f'Run {handle.run_id} has ended: forwarding stopped')
    except KeyboardInterrupt:
        console.print('\nStopped forwarding (the run goes on)')
    finally:
        listener.close()


def _listen(local_port: int, handle) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(('127.0.0.1', local_port))
    except OSError as e:
        listener.close()
        raise PipelineError(f'cannot listen on 127.0.0.1:{local_port} here: {e.strerror or e}',
                            hint=f'pick a free local port: doit forward job={handle.job} port=... '
                                 f'local_port={local_port + 10000 if local_port < 55535 else 0}') from None
    listener.listen(16)
    listener.settimeout(1.0)
    return listener


def _serve(listener, connect, alive, console: Console) -> None:
    """Accept until the run ends (checked every few seconds), one pair of pumps per connection."""
    checked = time.monotonic()
    while True:
        try:
            client, _ = listener.accept()
        except socket.timeout:
            if time.monotonic() - checked > 3:
                checked = time.monotonic()
                if not alive():
                    return
            continue
        threading.Thread(target=_pair, args=(client, connect, console), daemon=True).start()


def _pair(client, connect, console: Console) -> None:
    try:
        upstream = connect()
    except Exception as e:  # noqa: BLE001 - nothing listens there (yet): this connection only
        console.print(f'  a connection could not be forwarded: {type(e).__name__}: {e}')
        client.close()
        return
    client.settimeout(None)
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    for end in (client, upstream):
        end.close()


def _pump(source, target) -> None:
    """Copy until ``source`` ends, then end ``target``'s sending side."""
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    try:
        if hasattr(target, 'shutdown_write'):  # an SSH channel
            target.shutdown_write()
        else:
            target.shutdown(socket.SHUT_WR)
    except OSError:
        pass

"""Private names of paramiko (``paramiko>=3.2,<6``), see :mod:`tg_pipeline.compat`: when the server last
spoke, a keepalive that asks for a reply, and the keys of an agent at a given socket."""
from __future__ import annotations
import os


def track_received(transport, callback) -> None:
    """Call ``callback()`` whenever ``transport`` has read a message from the server."""
    packetizer = transport.packetizer
    read = packetizer.read_message

    def read_message():
        message = read()
        callback()
        return message
    packetizer.read_message = read_message


def keepalive_request(transport) -> None:
    """Send ``keepalive@openssh.com`` asking for a reply (any reply proves the server is there); do not wait."""
    import paramiko
    from paramiko.common import cMSG_GLOBAL_REQUEST
    message = paramiko.Message()
    message.add_byte(cMSG_GLOBAL_REQUEST)
    message.add_string('keepalive@openssh.com')
    message.add_boolean(True)
    transport._send_user_message(message)


def agent_keys(path: str | None) -> tuple:
    """The keys of the SSH agent at ``path`` (None: ``$SSH_AUTH_SOCK``; no agent there: none)."""
    import socket

    import paramiko
    if path is None:
        agent = paramiko.Agent()
        return agent.get_keys()
    if not os.path.exists(path):
        return ()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    agent = paramiko.agent.AgentSSH()
    agent._connect(sock)
    return agent.get_keys()

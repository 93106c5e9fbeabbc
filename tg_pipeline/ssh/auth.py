"""Which keys to offer at login, the way OpenSSH picks them from the resolved settings (a paramiko AuthStrategy).

Order as in OpenSSH: keys with a certificate (``CertificateFile``, or ``KEY-cert.pub`` beside an identity
file), then the agent's keys (``IdentityAgent``; with ``IdentitiesOnly`` only those matching an identity
file), then the identity files. A key file that needs a passphrase is skipped (there is no one to ask):
load it into the agent instead. What was offered, and what could not be, goes into the login error.
"""
from __future__ import annotations

import os

import paramiko
from paramiko.auth_strategy import AuthStrategy, InMemoryPrivateKey, OnDiskPrivateKey

from tg_pipeline.compat.paramiko import agent_keys


class OpenSSHKeys(AuthStrategy):
    def __init__(self, settings):
        super().__init__(ssh_config=None)
        self.settings = settings
        self.offered: list[str] = []
        self.unusable: list[str] = []

    def get_sources(self):
        user, seen = self.settings.user, set()
        files = self._file_keys()
        agent = self._agent_keys(files)
        with_cert = [(path, key) for path, key in files if key.public_blob is not None]
        plain = [(path, key) for path, key in files if key.public_blob is None]
        for path, key in with_cert + self._certified(plain):
            self.offered.append(f'{path} with its certificate')
            yield OnDiskPrivateKey(user, 'ssh-config', path, key)
        for key in agent:
            seen.add(key.asbytes())
            self.offered.append(f'agent key {key.fingerprint} ({key.comment or key.get_name()})')
            yield InMemoryPrivateKey(user, key)
        for path, key in plain:
            if key.asbytes() not in seen:
                self.offered.append(path)
                yield OnDiskPrivateKey(user, 'ssh-config', path, key)

    def _file_keys(self) -> list[tuple[str, paramiko.PKey]]:
        keys = []
        for path in self.settings.identity_files:
            if not os.path.isfile(path):
                continue
            try:
                keys.append((path, paramiko.PKey.from_path(path)))
            except paramiko.PasswordRequiredException:
                self.unusable.append(f'{path} needs a passphrase (add it to your agent: ssh-add {path})')
            except (paramiko.SSHException, ValueError, TypeError, OSError) as e:
                self.unusable.append(f'{path} cannot be read ({type(e).__name__}: {e})')
        return keys

    def _certified(self, plain) -> list[tuple[str, paramiko.PKey]]:
        """Each CertificateFile paired with the identity whose public key it certifies."""
        found = []
        for cert in self.settings.certificate_files:
            if not os.path.isfile(cert):
                continue
            try:
                blob = paramiko.PublicBlob.from_file(cert)
            except (ValueError, OSError, paramiko.SSHException) as e:
                self.unusable.append(f'certificate {cert} cannot be read ({e})')
                continue
            for path, key in plain:
                if _certifies(blob, key):
                    certified = paramiko.PKey.from_path(path)
                    certified.load_certificate(cert)
                    found.append((path, certified))
        return found

    def _agent_keys(self, files) -> list:
        agent = self.settings.identity_agent
        if agent == 'none':
            return []
        try:
            keys = list(agent_keys(agent or None))
        except (paramiko.SSHException, OSError) as e:
            self.unusable.append(f'the agent {agent or "$SSH_AUTH_SOCK"} does not answer ({e})')
            return []
        if not self.settings.identities_only:
            return keys
        wanted = {key.asbytes() for _, key in files} | set(_public_blobs(self.settings.identity_files))
        chosen = [k for k in keys if k.asbytes() in wanted]
        if len(chosen) < len(keys):
            self.unusable.append(f'{len(keys) - len(chosen)} agent key(s) matching no IdentityFile '
                                 '(IdentitiesOnly yes)')
        return chosen


def _certifies(blob, key) -> bool:
    """Whether the certificate ``blob`` certifies ``key`` (its public key fields follow the nonce)."""
    if not blob.key_type.startswith(key.get_name()):
        return False
    cert, own = paramiko.Message(blob.key_blob), paramiko.Message(key.asbytes())
    cert.get_text(), cert.get_binary(), own.get_text()  # key type, nonce; key type
    return cert.get_remainder().startswith(own.get_remainder())


def _public_blobs(paths):
    """The public keys beside the identity files (``KEY.pub``): how IdentitiesOnly matches encrypted keys."""
    for path in paths:
        try:
            yield paramiko.PublicBlob.from_file(path + '.pub').key_blob
        except (ValueError, OSError, paramiko.SSHException):
            continue

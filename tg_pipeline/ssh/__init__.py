"""SSH to a remote Docker host: the settings OpenSSH resolves (:mod:`.settings`), which client reaches it
(:mod:`.transport`): the ssh program with one shared connection per host and project and Docker channels on it
(:mod:`.openssh`), or paramiko where no ssh program can share connections (:mod:`.connection`, with the keys
offered by :mod:`.auth` and dead connections found by :mod:`.keepalive`); every failure as ERROR/TIP
(:mod:`.errors`), and the login started early (:mod:`.early`)."""

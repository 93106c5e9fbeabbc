"""SSH to a remote Docker host: the settings OpenSSH resolves (:mod:`.settings`), the keys offered
(:mod:`.auth`), every failure as ERROR/TIP (:mod:`.errors`), dead connections found (:mod:`.keepalive`), the
connection and the Docker channel over it (:mod:`.connection`), and the login started early (:mod:`.early`)."""

"""Step 6: runs. One backend protocol (base), container and swarm runs, and their lifecycle, written once."""

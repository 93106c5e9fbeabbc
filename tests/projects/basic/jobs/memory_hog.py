"""Allocates (and touches) memory until its container's limit stops it."""


class MemoryHog:
    def __init__(self, megabytes):
        self.megabytes = megabytes

    def run(self):
        blocks = []
        for i in range(self.megabytes // 16):
            blocks.append(b'x' * (16 * 1024 * 1024))
            print('allocated', (i + 1) * 16, 'MB', flush=True)
        return len(blocks)

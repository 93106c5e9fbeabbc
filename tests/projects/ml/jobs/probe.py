"""A job that reports what its container gives it: files, /dev/shm, a cache, a port, time."""
import os
import subprocess
import sys
import tempfile
import time


class Probe:
    def __init__(self, read=None, write=None, shm=False, cache=None, output=None, serve=0, text='', sleep=0,
                 env=()):
        self.read, self.write, self.shm, self.cache = read, write, shm, cache
        self.output, self.serve, self.text, self.sleep, self.env = output, serve, text, sleep, env

    def run(self):
        found = {}
        if self.read:
            with open(self.read) as file:
                found['read'] = file.read()
            print('READ', found['read'], flush=True)
        if self.write:
            try:
                with open(self.write, 'w') as file:
                    file.write('written by the job')
                found['write'] = 'ok'
            except OSError as e:
                found['write'] = f'refused: errno {e.errno}'
            print('WRITE', found['write'], flush=True)
        if self.shm:
            stat = os.statvfs('/dev/shm')
            found['shm'] = stat.f_blocks * stat.f_frsize
            print('SHM', found['shm'], flush=True)
        if self.cache:
            found['cache'] = self.use_cache(self.cache)
        for name in self.env:
            print(f'ENV {name}={os.environ.get(name, "<unset>")}', flush=True)
        if self.output:
            with open(os.path.join(os.environ['TG_PIPELINE_OUTPUT'], self.output), 'w') as file:
                file.write('written before the time ran out')
        if self.serve:
            self.run_server()
        else:
            for tick in range(int(self.sleep)):
                print('tick', tick, flush=True)
                time.sleep(1)
        return found

    @staticmethod
    def use_cache(path):
        """Print what an earlier run left in the cache, then leave this run's mark there."""
        marker = os.path.join(path, 'runs.txt')
        before = open(marker).read() if os.path.exists(marker) else ''
        print('CACHE BEFORE', repr(before), flush=True)
        with open(marker, 'a') as file:
            file.write(os.environ.get('TG_PIPELINE_RUN_ID', '?') + '\n')
        return before

    def run_server(self):
        folder = tempfile.mkdtemp()
        with open(os.path.join(folder, 'index.txt'), 'w') as file:
            file.write(self.text)
        print('SERVING', self.serve, flush=True)
        try:
            subprocess.run([sys.executable, '-m', 'http.server', str(self.serve), '--directory', folder],
                           timeout=self.sleep or None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pass

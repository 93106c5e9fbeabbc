"""A job as ML code is written: scikit-learn and scipy imported at the module's top (the bench's rows (m))."""
import datetime

import scipy
import sklearn

from .helper import square


class HeavyJob:
    def __init__(self, n):
        self.n = n

    def run(self):
        print(f'{datetime.datetime.now()} INFO: first line of the job', flush=True)
        return {'square': square(self.n), 'sklearn': sklearn.__version__, 'scipy': scipy.__version__}

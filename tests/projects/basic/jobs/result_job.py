"""Returns a value and writes a file into its output folder: both must come back to the caller."""
import os


class ResultJob:
    def __init__(self, n):
        self.n = n

    def run(self):
        output = os.environ['TG_PIPELINE_OUTPUT']
        with open(os.path.join(output, 'numbers.txt'), 'w') as file:
            file.write('\n'.join(str(i) for i in range(self.n)))
        print('wrote', self.n, 'numbers', flush=True)
        return {'sum': sum(range(self.n)), 'squares': [i * i for i in range(4)]}

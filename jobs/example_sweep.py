"""A small sweep for run_swarm: fits y = 3x + 1 by gradient descent, one variant per learning rate and
noise level. Each variant writes its loss curve to its output folder and returns its fit."""
import os
import random


class ExampleSweep:
    def __init__(self, learning_rate, noise, steps=200, seed=0):
        self.learning_rate, self.noise, self.steps, self.seed = learning_rate, noise, steps, seed

    def run(self):
        rng = random.Random(self.seed)
        xs = [i / 20 for i in range(20)]
        ys = [3 * x + 1 + rng.gauss(0, self.noise) for x in xs]
        a = b = 0.0
        losses = []
        for _ in range(self.steps):
            errors = [a * x + b - y for x, y in zip(xs, ys)]
            a -= self.learning_rate * 2 * sum(e * x for e, x in zip(errors, xs)) / len(xs)
            b -= self.learning_rate * 2 * sum(errors) / len(xs)
            losses.append(sum(e * e for e in errors) / len(xs))
        print(f'learning_rate={self.learning_rate} noise={self.noise}: a={a:.3f} b={b:.3f} '
              f'loss={losses[-1]:.4f}', flush=True)
        output = os.environ.get('TG_PIPELINE_OUTPUT')
        if output:
            with open(os.path.join(output, 'losses.txt'), 'w') as file:
                file.write('\n'.join(f'{loss:.6f}' for loss in losses))
        return {'a': round(a, 3), 'b': round(b, 3), 'loss': round(losses[-1], 4)}

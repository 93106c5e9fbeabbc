class Hello:
    def run(self):
        print('hello', flush=True)

import jinja2


class Render:
    def run(self):
        return jinja2.Template('{{ x }}').render(x=1)

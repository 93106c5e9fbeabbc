"""Every form of import of the project's own package, as the code would be written in the project folder."""
import jobs.util  # absolute: import package.module
from jobs import util  # from package import module
from jobs.util import shout  # absolute: from package.module import name
from .util import whisper  # relative
from .helpers.fmt import banner


class Loud:
    def __init__(self, text):
        self.text = text

    def run(self):
        import jobs.helpers.fmt as fmt  # an absolute import at run time, with "as"
        same = shout is util.shout is jobs.util.shout and fmt.banner is banner
        print('loud:', shout(self.text), whisper(self.text), banner(self.text), flush=True)
        return {'shout': shout(self.text), 'whisper': whisper(self.text), 'banner': banner(self.text),
                'same_objects': same, 'util': util.__name__}

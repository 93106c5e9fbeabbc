"""Names shared by the host side and the in-container entry point (placeholder until the runtime lands)."""
LABEL = 'tg_pipeline'
RUN_DIR = '/tg_pipeline/run'
ENV_RUN_DIR = 'TG_PIPELINE_RUN_DIR'
ENV_RUN_ID = 'TG_PIPELINE_RUN_ID'
ENV_OUTPUT = 'TG_PIPELINE_OUTPUT'
ENV_SEND_BACK = 'TG_PIPELINE_SEND_BACK'
ENV_SLOT = 'TG_PIPELINE_SLOT'
RESULT_FILE = 'result.pkl'
TRACEBACK_FILE = 'traceback.txt'
OUTPUT_DIR = 'output'
EXIT_FILE = 'exit.json'
META_FILE = '_tg_meta.json'
RUNTIME_PACKAGE = '_tg_runtime'
RESOURCES_DIR = 'resources'
FILE_MARKER = 'TG_PIPELINE_FILE'

import base64 as _base64
import re as _re

_MARKER = _re.compile(r'^TG_PIPELINE_FILE (\d+) (\S+) (\d+)/(\d+) (\S*)$')


def parse_marker(line):
    found = _MARKER.match(line)
    if not found:
        return None
    return int(found.group(1)), found.group(2), int(found.group(3)), int(found.group(4)), found.group(5)


def join_markers(parts, total):
    return _base64.b64decode(''.join(parts[i] for i in range(1, total + 1)))

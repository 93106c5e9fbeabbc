import sys

from tg_pipeline.cli import main

sys.exit(main())

"""`python -m tg_pipeline`: the same as the `tg-pipeline` command."""
import sys

from tg_pipeline.cli import main

sys.exit(main())

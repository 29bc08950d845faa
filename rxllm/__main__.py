"""``python -m rxllm``: the same as the ``rxllm`` command."""

import sys

from .cli import main

sys.exit(main())

"""`python -m seg_pipeline.cli`: the same as the `seg-pipeline` command."""

import sys

from seg_pipeline.cli.app import main

sys.exit(main())

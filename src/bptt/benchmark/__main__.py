"""Worker entry point: ``python -m bptt.benchmark '<job json>'`` (started by ``run_suite``)."""

import sys

from .runner import worker_main

sys.exit(worker_main(sys.argv[1:]))

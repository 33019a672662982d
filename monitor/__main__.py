"""`python -m monitor` is the `newsmon` command."""

import sys

from monitor.cli import main

sys.exit(main())

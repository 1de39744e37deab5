"""`python -m authz_server.cli`: the `authz` command."""

import sys

from . import main

sys.exit(main())

"""The one version of authz (server, client, CLI): pyproject files read it from here.

It follows the API: 1.0.0 was the released proto baseline (proto/releases/v1.0.0.binpb);
1.1.0 adds to that API. `make proto-release VERSION=v<this>` records the baseline when
a release ships. CHANGELOG.md's newest release heading must name this version.
"""

__version__ = "1.1.0"

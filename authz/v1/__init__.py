"""The gRPC stubs, by their historical name: an alias of `authz_client.v1`.

The stubs are generated once, into the client package (`make proto`; see
tools.codegen), because the client wheel is installed alone and must carry them.
Server code and tests import them as `authz.v1` or `authz_client.v1`: both names are the
same module objects, so each message class exists once.
"""

import sys
from typing import TYPE_CHECKING

# mypy, run over the source tree, knows the client package as `client` (see commands.py).
if TYPE_CHECKING:
    from client.v1 import authz_pb2 as authz_pb2
    from client.v1 import authz_pb2_grpc as authz_pb2_grpc
else:
    from authz_client.v1 import authz_pb2, authz_pb2_grpc

sys.modules[f"{__name__}.authz_pb2"] = authz_pb2
sys.modules[f"{__name__}.authz_pb2_grpc"] = authz_pb2_grpc

"""authz: the authorization server a CRM asks before every finance operation.

This package is the domain: policy sources and their compiler, the decision engine,
migration, attribution and the store. It imports no gRPC; `authz.v1` holds the
generated API stubs, which are not domain code.
"""

__version__ = "0.1.0"

"""The API: gRPC servicers, the Envoy ext_authz and AuthZEN HTTP doors, and their
conversions (proto or JSON in, a domain call, proto or JSON out)."""

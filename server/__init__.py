"""authz_server: the gRPC transport in front of the `authz` domain (installed as `authz_server`)."""

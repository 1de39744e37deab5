"""authz_client: a thin typed SDK for the authz gRPC API (installed as `authz_client`)."""

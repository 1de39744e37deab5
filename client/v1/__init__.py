"""Generated gRPC stubs (python -m authz_server.codegen); do not edit."""

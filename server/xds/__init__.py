"""Envoy ext_authz stubs vendored from xds-protos==1.85.0 by authz_server.xds_vendor; do not edit."""

"""authz_server: the transport in front of the `authz` domain (installed as
`authz_server`): edge/ (who may call, within which limits), api/ (the servicers and
their conversions), process/ (the running server); and cli/, the `authz` command line,
which nothing here imports."""

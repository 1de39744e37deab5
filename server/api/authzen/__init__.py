"""AuthZEN 1.0 over HTTP: the handlers, the JSON <-> domain mapping, search."""

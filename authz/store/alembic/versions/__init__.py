"""Store schema revisions, oldest first: 0001 directory; later issues add jobs, outbox, audit."""

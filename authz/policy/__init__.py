"""Policy as code: YAML sources in `authz/policies/`, compiled to Casbin files."""

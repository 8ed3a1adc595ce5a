"""The redirect service, the management service, and the operators' tooling around them."""

"""The redirect service: ``/r/{id}`` answered from memory, PostgreSQL behind it."""

"""The admin console: server-rendered pages at /console/ (see views.py)."""

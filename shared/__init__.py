"""Small, stateless facts both services need.

Nothing here may import SQLAlchemy, Pillow or qrcode: the redirect service imports this package
on its hot path and must start without them.
"""

"""``qrctl``: the administrators' command line for the management API (click over httpx)."""

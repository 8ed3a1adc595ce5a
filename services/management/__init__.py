"""The management service: every admin write, QR rendering and image storage."""

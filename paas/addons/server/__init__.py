"""What runs inside an add-on's container (`entry.py`, standard library only, under the
stack's /usr/bin/python3): it prepares the data directory and becomes the server."""

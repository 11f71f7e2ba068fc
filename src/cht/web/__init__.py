"""The web timeline: an ASGI app (FastAPI) and the page's static files."""

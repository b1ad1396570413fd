"""`fcnseg serve`: a model behind an HTTP API and a page, on loopback unless told otherwise.

    limits.py   what a request may be: upload bytes, pixels (read from the header before any
                decoding), a bounded queue (503 when full); ApiError, the one refusal
    model.py    ServedModel: an upload in, what `fcnseg predict` writes for it out (the same
                reading, inference scale, tiles, palette and backend choice)
    app.py      the FastAPI app: GET /, /health, /model; POST /predict
    page.html   the page: one file, inline style and script, no external asset

FastAPI, uvicorn and python-multipart come with the `serve` extra (pip install 'fcnseg[serve]');
nothing here is imported by the rest of fcnseg, so the package works without them.
"""

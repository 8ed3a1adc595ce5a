"""The management service: every admin write, QR rendering and image storage.

::

    app.py        the factory: the door, the console's pages, the API's routes, the lifespan
    auth/         who is calling: the network rule, tokens, console sessions, the Identity, the door
    api/          the JSON front end: the table of operations, endpoints, answers, the OpenAPI document
    console/      the HTML front end, a module per page
    service/      the operations under both front ends: transaction, history, metric, log line
    errors.py     the domain errors the operations raise (never an HTTP status)
    schemas/      the shapes: a code's fields (declared once), request bodies, queries, answers
    inputs.py     reading a request's body and query string, refusals in the API's words
    codes.py, history.py, bulk.py, analytics.py, agents.py       the database work below the operations
    exports.py, selections.py, archives.py, labels.py            the files: CSV, ZIP, PDF
    images.py, rendering.py, logos.py, storage.py                images: made, checked, kept
    models.py, limits.py, metrics.py, settings.py                tables, bounds, metrics, settings
"""

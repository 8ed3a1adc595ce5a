"""The management API (``/api/v1``): a thin JSON front end over the operations of
:mod:`services.management.service`.

::

    operations.py the table of operations (path, method, endpoint, models, answers): declared once
    routes.py     Starlette's routes built from it (path id, query and body read before the endpoint)
    openapi.py    the OpenAPI document built from the same table
    endpoints.py  each operation's endpoint: call the service, answer
    answers.py    models as JSON, and every error (domain errors too) in the API's one shape
"""

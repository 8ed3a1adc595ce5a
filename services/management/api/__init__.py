"""The management API (``/api/v1``): a thin JSON front end over the operations of
:mod:`services.management.service`.

::

    endpoints.py  each operation's endpoint: read the request, call the service, answer
    answers.py    models as JSON, and every error (domain errors too) in the API's one shape
"""

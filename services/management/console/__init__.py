"""The admin console: server-rendered pages at /console/ over the same operations as the API
(:mod:`services.management.service`), a module per page.

Every page works without JavaScript (forms post, the server redirects or renders the form again
with each field's error beside it); htmx redraws the QR preview as its options change, uPlot draws
the scan series, and a button copies the short URL. The images, exports and CSV files a page links
to are the API's own (a console session may read the API; only the console's forms write).

::

    frame.py     what every page shares: session, identity, forms and their checks, templates, errors
    sign_in.py   signing in and out
    codes.py     the list of codes, and exporting a selection
    new_code.py  a new code from the form, or many from a CSV file
    code.py      one code: its image, logo, settings, history; switching it; deleting it
    scans.py     scan statistics, of a code or of every code
    forms.py     the forms' fields as the API's models read them
    routes.py    every page's routes
"""

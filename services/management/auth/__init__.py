"""Who is calling, decided once at the door: the network rule (allowlist, trusted proxies, host names),
bearer tokens, the console's sessions, and the typed :class:`~.identity.Identity` every layer below is
given. Roles and single sign-on belong here too, and nowhere else.

::

    network.py   the network rule: the client's address, host names, requests other sites' pages made
    tokens.py    bearer tokens: the service's own (keyed hash, role, tags) and ADMIN_TOKENS_FILE's
    roles.py     viewer < editor < admin
    sessions.py  the console's signed cookie, sign-outs, and its checks against forged forms
    oidc.py      sign-in through an OpenID Connect provider, and its JWT access tokens (OIDC_*)
    identity.py  Identity: who, from where, under which request id, with which role and tags
    door.py      the ASGI middleware that applies the rules and attaches the Identity to the request
"""

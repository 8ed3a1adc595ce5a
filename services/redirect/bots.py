"""Telling people from machines by user agent, for scan statistics.

Bots are recorded like everyone else, flagged with a reason, and never counted as people. The
patterns cover what scans a printed code's link besides phones: chat and mail apps fetching a
preview, crawlers, uptime monitors, HTTP libraries. Checked in order, so "Twitterbot" is a link
preview before it is a crawler. Runs in the background writer, never in the request.
"""

from __future__ import annotations

import functools
import re

_RULES = (
    (
        "link-preview",
        # The fetchers of previews, not the apps: LINE, Snapchat, Pinterest or Outlook name themselves
        # in the user agent of their in-app browsers too, and people scan codes with those.
        r"facebookexternalhit|facebookcatalog|meta-externalagent|twitterbot|slackbot|slack-imgproxy|"
        r"^whatsapp/|telegrambot|discordbot|linkedinbot|skypeuripreview|pinterestbot|redditbot|iframely|"
        r"embedly|vkshare|snap url preview|kakaotalk-scrap|mastodon/|google-pagerenderer|microsoftpreview|"
        r"bingpreview|matrix-org|applebot",
    ),
    ("mail-scanner", r"proofpoint|mimecast|barracuda|trend ?micro|symantec|safelinks|forcepoint"),
    (
        "monitor",
        r"uptimerobot|pingdom|statuscake|site24x7|datadog|newrelicpinger|betteruptime|hetrixtools|checkly",
    ),
    (
        "http-client",
        r"^curl/|^wget/|python-requests|python-httpx|python-urllib|aiohttp|go-http-client|okhttp|^java/|"
        r"libwww-perl|axios|node-fetch|undici|postmanruntime|httpie|scrapy|^ruby|^php",
    ),
    ("crawler", r"bot\b|bot/|crawl|spider|slurp|archiver|headless|lighthouse|phantomjs|facebot|preview"),
)
_COMPILED = tuple((reason, re.compile(pattern, re.IGNORECASE)) for reason, pattern in _RULES)


@functools.lru_cache(maxsize=10_000)  # a user agent is classified once; there are few distinct ones
def classify(user_agent: str | None) -> str | None:
    """Why this user agent is a bot, or ``None`` for a person (as far as a user agent can tell)."""
    if not user_agent or not user_agent.strip():
        return "no-user-agent"
    for reason, pattern in _COMPILED:
        if pattern.search(user_agent):
            return reason
    return None

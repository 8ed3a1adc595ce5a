from __future__ import annotations

import pytest

from services.redirect.bots import classify

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


@pytest.mark.parametrize(
    "user_agent",
    [
        IPHONE,
        ANDROID,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/133.0",
        # In-app browsers of apps with their own QR scanners: people, not previews.
        f"{IPHONE} Line/14.20.0",
        f"{ANDROID} Snapchat/13.10.0.43 (like Safari/604.1)",
        f"{IPHONE} [Pinterest/iOS]",
        f"{ANDROID} Viber/22.8.0.1",
        f"{IPHONE} Outlook-iOS/4.2445.0",
        f"{ANDROID} WhatsApp/2.24.1 Mobile",
        f"{IPHONE} Instagram 340.0.0.22.109",
    ],
)
def test_people(user_agent: str) -> None:
    assert classify(user_agent) is None


@pytest.mark.parametrize(
    ("user_agent", "reason"),
    [
        (None, "no-user-agent"),
        ("", "no-user-agent"),
        ("   ", "no-user-agent"),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "link-preview"),
        ("WhatsApp/2.23.20.0", "link-preview"),
        ("Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)", "link-preview"),
        ("Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots", "link-preview"),
        ("TelegramBot (like TwitterBot)", "link-preview"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "link-preview"),
        ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "link-preview"),
        ("Twitterbot/1.0", "link-preview"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "crawler"),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "crawler"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0", "crawler"),
        ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "monitor"),
        ("curl/8.5.0", "http-client"),
        ("python-requests/2.32.3", "http-client"),
        ("python-httpx/0.28.1", "http-client"),
        ("Go-http-client/1.1", "http-client"),
    ],
)
def test_bots_are_flagged_with_a_reason(user_agent: str | None, reason: str) -> None:
    assert classify(user_agent) == reason

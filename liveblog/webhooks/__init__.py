"""Partner webhooks: subscriptions, the dispatcher, signing and the SSRF guard."""

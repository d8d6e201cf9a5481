"""liveblog: a live-blog feed publisher.

Editors write to one Redis stream per blog; web processes fan the changes out to readers over
server-sent events and dispatchers deliver them to partners as Standard Webhooks.
"""

__version__ = "0.1.0"

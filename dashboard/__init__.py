"""The reviewer dashboard's shared pieces: base layout and navigation, the page permission decorator, the
no-COUNT paginator, page filter forms, chart builders, template filters, middleware, and the process
commands (``start``, ``simulate``).

Each feature app keeps its own pages (views, urls, templates) and builds them from these pieces. The
library modules here import none of our feature apps, so every app may use them; the management
commands are process entry points (like ``config/urls.py``) and may import any app.
"""

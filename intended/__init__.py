"""The project: settings, ASGI routing, and what every app may use (metrics, logging, the glob
dialect, background tasks). The Celery app is `intended.celery` (`celery -A intended`); the
Django side loads it when the apps are ready (approvals_app.apps), so importing a module of
this package needs neither Celery nor Django."""

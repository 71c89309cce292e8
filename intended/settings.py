"""One settings module, read from the environment.

No variables at all gives the embedded default: SQLite, an in-memory channel layer, in-process
velocity counters and Celery tasks run eagerly, so a fresh machine runs the whole product with no
servers. `DATABASE_URL` (PostgreSQL) and `REDIS_URL` switch to the production backends. A bad
value stops start-up with `ImproperlyConfigured` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_seconds(name: str, default: float) -> float:
    """A positive duration in seconds (a decimal number)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ImproperlyConfigured(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str) -> list[str]:
    """A comma list of IP addresses and CIDR networks (normalized, e.g. 10.0.0.0/8)."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(str(ipaddress.ip_network(item.strip("[]"), strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be a comma list of IP addresses or CIDR networks, got {item!r}") from None
    return networks


def database_from_url(name: str, url: str) -> dict[str, Any]:
    import dj_database_url

    scheme = urlparse(url).scheme
    if scheme not in ("sqlite", "postgres", "postgresql", "pgsql"):
        raise ImproperlyConfigured(
            f"{name} must be sqlite:///path or postgres://..., got scheme {scheme!r}"
        )
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url))
    except Exception as exc:  # dj-database-url raises several types
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if scheme != "sqlite" and not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} must name a database, got {url!r}")
    if scheme != "sqlite":
        # Under ASGI every dashboard request runs its sync code in a thread of its own, so
        # persistent per-thread connections (CONN_MAX_AGE) pile up until PostgreSQL refuses
        # clients. A psycopg pool shared by the process gives reuse without that leak.
        config["CONN_MAX_AGE"] = 0
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 2,
            "max_size": env_int("INTENDED_DB_POOL_SIZE", 20, minimum=2),
            "timeout": 10,
        }
    return config


def issuer_url(name: str) -> str:
    """An OAuth / OpenID issuer from the environment: https, or http on loopback only (the
    tests' identity provider); anything else stops start-up with the setting named."""
    value = os.environ.get(name, "").strip()
    parts = urlparse(value)
    if value and (not parts.hostname or (parts.scheme != "https" and not (
            parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")))):
        raise ImproperlyConfigured(f"{name} must be an https:// URL (http only on loopback), got {value!r}")
    return value


def redis_url(name: str) -> str:
    url = env_str(name)
    if url and urlparse(url).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"{name} must be redis://..., rediss://... or unix://..., got {url!r}")
    return url


DATA_DIR = Path(env_str("INTENDED_DATA_DIR", str(BASE_DIR / "var")))


def _embedded_secret_key() -> str:
    """The embedded default keeps a generated key in the data dir, never in the repository."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or _embedded_secret_key()
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = redis_url("REDIS_URL")
EMBEDDED = not DATABASE_URL and not REDIS_URL

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "gateway",
    "policies_app",
    "audit_app",
    "approvals_app",
    "dashboard",
    # sign-in throttling (docs/SECURITY.md): failed attempts by user and by address
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The dashboard's own CSS and scripts (and the vendored htmx), served by the app itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "intended.middleware.RequireTLSMiddleware",
    "intended.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into our lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "intended.urls"
ASGI_APPLICATION = "intended.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.navigation.navigation",
            ],
        },
    },
]

if DATABASE_URL:
    DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "intended.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    # A file, not memory, so that gateway processes started by the tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True

# The queue tasks are sent to and a worker reads by default (its tasks queue their follow-ups,
# such as a webhook's delivery, there too): deployments that share one Redis use one each.
CELERY_TASK_DEFAULT_QUEUE = env_str("INTENDED_CELERY_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE = {
    "seal-audit-trail": {
        "task": "audit_app.tasks.seal",
        "schedule": timedelta(seconds=env_int("INTENDED_SEAL_INTERVAL", 5, minimum=1)),
    },
    "expire-approvals": {
        "task": "approvals_app.tasks.expire_due",
        "schedule": timedelta(seconds=5),
    },
    "remind-approvals": {
        "task": "approvals_app.tasks.remind_due",
        "schedule": timedelta(seconds=10),
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
# Served from the source tree without a collectstatic step, so `make demo` needs nothing else
# (STATIC_ROOT then need not exist: `collectstatic` is optional).
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# Sign-in throttling on /login/ and /admin/login/ (django-axes, docs/SECURITY.md): after
# INTENDED_LOGIN_FAILURE_LIMIT failed passwords for one user name, or from one address, that user
# name or address may not sign in (not even with the right password) until
# INTENDED_LOGIN_LOCKOUT_MINUTES have passed since the last failure. Attempts live in the
# database, so every replica sees them. A failure during the lock does not extend it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("INTENDED_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("INTENDED_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "dashboard.lockouts.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429

# Dashboard single sign-on with OpenID Connect (dashboard/oidc.py, docs/SECURITY.md): on when
# the issuer, client id and client secret are all set. The endpoints and keys come from the
# issuer's discovery document; roles from the claim INTENDED_OIDC_ROLES_CLAIM on every sign-in.
INTENDED_OIDC_ISSUER = issuer_url("INTENDED_OIDC_ISSUER").rstrip("/")
INTENDED_OIDC_CLIENT_ID = env_str("INTENDED_OIDC_CLIENT_ID")
INTENDED_OIDC_CLIENT_SECRET = env_str("INTENDED_OIDC_CLIENT_SECRET")
INTENDED_OIDC_ROLES_CLAIM = env_str("INTENDED_OIDC_ROLES_CLAIM", "groups") or "groups"
INTENDED_OIDC_USERNAME_CLAIM = env_str("INTENDED_OIDC_USERNAME_CLAIM", "preferred_username") or "preferred_username"
INTENDED_OIDC_SCOPES = env_str("INTENDED_OIDC_SCOPES", "openid email profile") or "openid email profile"
INTENDED_OIDC_PROVIDER_NAME = env_str("INTENDED_OIDC_PROVIDER_NAME", "single sign-on") or "single sign-on"
_oidc_set = {name: bool(globals()[name]) for name in
             ("INTENDED_OIDC_ISSUER", "INTENDED_OIDC_CLIENT_ID", "INTENDED_OIDC_CLIENT_SECRET")}
INTENDED_OIDC_ENABLED = all(_oidc_set.values())
if any(_oidc_set.values()) and not INTENDED_OIDC_ENABLED:
    raise ImproperlyConfigured("OpenID Connect sign-in needs INTENDED_OIDC_ISSUER, INTENDED_OIDC_CLIENT_ID and "
                               "INTENDED_OIDC_CLIENT_SECRET; missing: "
                               + ", ".join(name for name, set_ in _oidc_set.items() if not set_))
if INTENDED_OIDC_ENABLED:
    if "openid" not in INTENDED_OIDC_SCOPES.split():
        raise ImproperlyConfigured(f"INTENDED_OIDC_SCOPES must include openid, got {INTENDED_OIDC_SCOPES!r}")
    AUTHENTICATION_BACKENDS.append("dashboard.oidc.SignInBackend")
# mozilla-django-oidc: authorization code flow with PKCE (S256), state and nonce; the client
# authenticates at the token endpoint with HTTP Basic (client_secret_basic, the OpenID default)
# or, with INTENDED_OIDC_TOKEN_AUTH=post, in the body; the ID token is kept in the session for
# RP-initiated logout (id_token_hint). Client id, secret and endpoints: dashboard/oidc.py.
INTENDED_OIDC_TOKEN_AUTH = env_str("INTENDED_OIDC_TOKEN_AUTH", "basic") or "basic"
if INTENDED_OIDC_TOKEN_AUTH not in ("basic", "post"):
    raise ImproperlyConfigured(f"INTENDED_OIDC_TOKEN_AUTH must be basic or post, got {INTENDED_OIDC_TOKEN_AUTH!r}")
OIDC_TOKEN_USE_BASIC_AUTH = INTENDED_OIDC_TOKEN_AUTH == "basic"
OIDC_RP_SCOPES = INTENDED_OIDC_SCOPES
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_USE_NONCE = True
OIDC_STORE_ID_TOKEN = True
OIDC_TIMEOUT = 10
OIDC_AUTHENTICATION_CALLBACK_URL = "dashboard:oidc-callback"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # `Authorization: Token <token>`: hashed, expiring, revocable (dashboard/tokens.py)
        "dashboard.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {"TITLE": "Intended API", "VERSION": "0.1.0"}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "intended@localhost")
# Where django.core.mail.backends.filebased.EmailBackend writes (approval notifications).
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))

# Security headers and cookies. Production (not embedded) is secure by default.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not EMBEDDED and not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not EMBEDDED and not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if EMBEDDED else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
if env_bool("INTENDED_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Trust X-Forwarded-Proto from a TLS-terminating proxy (docs/DEPLOY.md).
INTENDED_BEHIND_TLS_PROXY = env_bool("INTENDED_BEHIND_TLS_PROXY", False)
# Reverse proxies whose X-Forwarded-For names the client (gateway/transport_security.py); empty:
# the peer's own address is the client, whoever connects (loopback included).
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
# Refuse plain HTTP from clients not on this host (gateway/transport_security.py); on in production.
INTENDED_REQUIRE_TLS = env_bool("INTENDED_REQUIRE_TLS", not EMBEDDED and not DEBUG)
# Load balancer probes speak plain HTTP and carry no secret.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
if INTENDED_REQUIRE_TLS:
    # security.W008 asks for SECURE_SSL_REDIRECT; INTENDED_REQUIRE_TLS refuses plain HTTP from
    # other hosts instead of redirecting it, which is stricter (a redirect comes after the
    # credentials were already sent in clear).
    SILENCED_SYSTEM_CHECKS = ["security.W008"]
# Bearer token for /metrics and the detailed /readyz from other hosts (loopback needs none).
INTENDED_METRICS_TOKEN = env_str("INTENDED_METRICS_TOKEN")

# --- the gateway as an OAuth 2.1 resource server (docs/SECURITY.md "Agents with OAuth") --------
# With INTENDED_OAUTH_ISSUER set, /mcp/<server> also takes access tokens from that issuer (agent
# keys keep working). The issuer is compared exactly as written (Auth0's ends with "/").
INTENDED_OAUTH_ISSUER = issuer_url("INTENDED_OAUTH_ISSUER")
# The gateway's public base URL (resource URIs, links in notifications).
INTENDED_PUBLIC_URL = env_str("INTENDED_PUBLIC_URL").strip().rstrip("/")
INTENDED_OAUTH_GROUPS_CLAIM = env_str("INTENDED_OAUTH_GROUPS_CLAIM", "groups").strip() or "groups"
# The claims that name the client, first present wins (Okta: cid; Entra ID v1 tokens: appid).
INTENDED_OAUTH_CLIENT_CLAIMS = env_list("INTENDED_OAUTH_CLIENT_CLAIMS", ["client_id", "azp"])
# Advertised in the Protected Resource Metadata, so that clients ask for them.
INTENDED_OAUTH_SCOPES = env_list("INTENDED_OAUTH_SCOPES", [])
# The JWT signature algorithms accepted from an issuer, for agents' access tokens and dashboard
# ID tokens alike: asymmetric only (HS* would make a shared secret a signing key; "none" signs nothing).
JWT_SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
INTENDED_OAUTH_ALGORITHMS = env_list("INTENDED_OAUTH_ALGORITHMS", list(JWT_SIGNING_ALGORITHMS))
INTENDED_OAUTH_CLOCK_SKEW_SECONDS = env_int("INTENDED_OAUTH_CLOCK_SKEW_SECONDS", 60)
INTENDED_OAUTH_JWKS_TTL_SECONDS = env_int("INTENDED_OAUTH_JWKS_TTL_SECONDS", 60, minimum=1)
INTENDED_OAUTH_INTROSPECTION_CLIENT_ID = env_str("INTENDED_OAUTH_INTROSPECTION_CLIENT_ID")
INTENDED_OAUTH_INTROSPECTION_CLIENT_SECRET = env_str("INTENDED_OAUTH_INTROSPECTION_CLIENT_SECRET")
if INTENDED_OAUTH_ISSUER:
    if not INTENDED_PUBLIC_URL or urlparse(INTENDED_PUBLIC_URL).scheme not in ("http", "https"):
        raise ImproperlyConfigured("INTENDED_OAUTH_ISSUER needs INTENDED_PUBLIC_URL, the gateway's public base URL "
                                   "(e.g. https://gateway.example.com): a server's resource URI is "
                                   "<public url>/mcp/<server>, the audience its tokens must carry")
    _bad_algs = [a for a in INTENDED_OAUTH_ALGORITHMS if a.lower() == "none" or a.upper().startswith("HS")]
    if _bad_algs or not INTENDED_OAUTH_ALGORITHMS:
        raise ImproperlyConfigured("INTENDED_OAUTH_ALGORITHMS takes asymmetric algorithms only (never none or "
                                   f"HS*), got {INTENDED_OAUTH_ALGORITHMS!r}")
    if INTENDED_OAUTH_CLOCK_SKEW_SECONDS > 300:
        raise ImproperlyConfigured("INTENDED_OAUTH_CLOCK_SKEW_SECONDS must be at most 300")

# --- the gateway -------------------------------------------------------------------------
INTENDED_MAX_BODY_BYTES = env_int("INTENDED_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
INTENDED_ALLOW_PRIVATE_UPSTREAMS = env_bool("INTENDED_ALLOW_PRIVATE_UPSTREAMS", EMBEDDED)
# Fernet keys (urlsafe base64, 32 bytes) for upstream credentials at rest; the first encrypts,
# all decrypt, so a key can be rotated with `python manage.py rotate_credentials`.
INTENDED_CREDENTIAL_KEYS = env_list("INTENDED_CREDENTIAL_KEYS", [])
# Where the audit signing keys live: outside the audit tables, by design.
INTENDED_SIGNING_KEY_DIR = Path(env_str("INTENDED_SIGNING_KEY_DIR", str(DATA_DIR / "signing-keys")))
INTENDED_AUDIT_ORIGIN = env_str("INTENDED_AUDIT_ORIGIN", "intended.local/audit")
# How often a gateway process checks whether the configuration changed (seconds).
INTENDED_CONFIG_POLL_SECONDS = env_seconds("INTENDED_CONFIG_POLL_SECONDS", 0.5)
# Idle SSE keep-alive interval (seconds) while a call is held or a stream is quiet.
INTENDED_KEEPALIVE_SECONDS = env_seconds("INTENDED_KEEPALIVE_SECONDS", 15)
# How long a velocity check may wait for Redis before the call is denied (fail closed).
INTENDED_VELOCITY_TIMEOUT_SECONDS = env_seconds("INTENDED_VELOCITY_TIMEOUT_SECONDS", 2)
# The gateway protects itself without a reverse proxy (docs/SECURITY.md, "Slow and greedy
# clients"): a request's headers must arrive within INTENDED_HEADER_TIMEOUT_SECONDS (`serve`)
# and be at most INTENDED_MAX_HEADER_BYTES, its body within INTENDED_BODY_TIMEOUT_SECONDS
# (else 408); an upstream JSON answer or SSE event over INTENDED_MAX_UPSTREAM_ANSWER_BYTES is
# an error; at most INTENDED_MAX_AGENT_CONNECTIONS agent requests are open per process (503).
INTENDED_HEADER_TIMEOUT_SECONDS = env_seconds("INTENDED_HEADER_TIMEOUT_SECONDS", 10)
INTENDED_MAX_HEADER_BYTES = env_int("INTENDED_MAX_HEADER_BYTES", 64 * 1024, minimum=4096)
INTENDED_BODY_TIMEOUT_SECONDS = env_seconds("INTENDED_BODY_TIMEOUT_SECONDS", 30)
INTENDED_MAX_UPSTREAM_ANSWER_BYTES = env_int("INTENDED_MAX_UPSTREAM_ANSWER_BYTES", 16 * 1024 * 1024, minimum=1024)
INTENDED_MAX_AGENT_CONNECTIONS = env_int("INTENDED_MAX_AGENT_CONNECTIONS", 1000, minimum=1)
# How long a session binding or pending-call lookup may wait for Redis (connect and command)
# before the request is refused (fail closed, 503).
INTENDED_REDIS_TIMEOUT_SECONDS = env_seconds("INTENDED_REDIS_TIMEOUT_SECONDS", 2)
# --- approvals: where reviewers are told (approvals_app.notifications) ---
# Links in notifications use INTENDED_PUBLIC_URL (set above, with OAuth; empty: http://localhost:8000).
INTENDED_WEBHOOK_URL = env_str("INTENDED_WEBHOOK_URL")
# whsec_<base64> (Standard Webhooks; space-separated while rotating), checked at start-up by
# approvals_app (docs/APPROVALS.md); a secret of the old format still signs, with a warning.
INTENDED_WEBHOOK_SECRET = env_str("INTENDED_WEBHOOK_SECRET")
INTENDED_WEBHOOK_FORMAT = env_str("INTENDED_WEBHOOK_FORMAT", "json")  # json | slack
INTENDED_WEBHOOK_ATTEMPTS = env_int("INTENDED_WEBHOOK_ATTEMPTS", 5, minimum=1)
INTENDED_WEBHOOK_BACKOFF_SECONDS = env_seconds("INTENDED_WEBHOOK_BACKOFF_SECONDS", 2)
# How often a held call re-reads its approval when no wake-up message came (the DB is the truth).
INTENDED_APPROVAL_POLL_SECONDS = env_seconds("INTENDED_APPROVAL_POLL_SECONDS", 2)

# json: one object per line with call_id/agent/server (intended/logging.py); text for a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "text" if EMBEDDED else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, got {LOG_FORMAT!r}")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # workers log through LOGGING below, in the same format

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "intended.logging.JsonFormatter"},
        "text": {"()": "intended.logging.TextFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
    "loggers": {"intended": {"level": env_str("LOG_LEVEL", "INFO")}},
}

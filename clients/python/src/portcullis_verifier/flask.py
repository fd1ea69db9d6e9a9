"""Flask: ``PortcullisAuth(app)`` and the view decorators.

    app.config.update(PORTCULLIS_ISSUER="https://auth.example.com",
                      PORTCULLIS_AUDIENCE="https://inference.example.com")
    PortcullisAuth(app)

    @app.post("/v1/models/<model_id>/predict")
    @scope_required("models:invoke")
    def predict(model_id):
        who = current_principal()          # claims, scopes, roles, actor, DPoP key …

``PortcullisAuth`` serves the RFC 9728 metadata document (by default when the audience is an
http(s) URL) and answers 401/403/503 as ``ResourceServer.render`` says, with
``resource_metadata`` in every challenge. Install with ``pip install portcullis-verifier[flask]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast, overload

from flask import Flask, Response, current_app, g, jsonify, request

from .core import AuthFailure, Principal, ResourceServer, check_base_url, flatten_names
from .core import DPOP_MODES as _DPOP_MODES
from .dpop import DPoPVerifier
from .metadata import METADATA_HEADERS
from .tokens import KeySource, TokenVerifier

__all__ = [
    "PortcullisAuth",
    "current_claims",
    "current_principal",
    "role_required",
    "scope_required",
    "token_required",
]

F = TypeVar("F", bound=Callable[..., Any])

EXTENSION = "portcullis_auth"  # app.extensions key

#: ``app.config`` key -> (``ResourceServer`` argument, conversion).
CONFIG: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "PORTCULLIS_ISSUER": ("issuer", str),
    "PORTCULLIS_AUDIENCE": ("audience", str),
    "PORTCULLIS_JWKS_URL": ("jwks_url", str),
    "PORTCULLIS_JWKS_MIN_REFRESH_INTERVAL": ("jwks_min_refresh_interval", float),
    "PORTCULLIS_JWKS_DEFAULT_MAX_AGE": ("jwks_default_max_age", float),
    "PORTCULLIS_JWKS_TIMEOUT": ("jwks_timeout", float),
    "PORTCULLIS_LEEWAY": ("leeway", float),
    "PORTCULLIS_EXP_LEEWAY": ("exp_leeway", float),
    "PORTCULLIS_REALM": ("realm", str),
    "PORTCULLIS_DPOP_MODE": ("dpop_mode", str),
    "PORTCULLIS_DPOP_MAX_AGE": ("dpop_max_age", float),
    "PORTCULLIS_DPOP_MAX_FUTURE": ("dpop_max_future", float),
    "PORTCULLIS_DPOP_REPLAY_CACHE_SIZE": ("replay_cache_size", int),
    "PORTCULLIS_EXTERNAL_BASE_URL": ("external_base_url", str),
    "PORTCULLIS_RESOURCE": ("resource", str),
    "PORTCULLIS_RESOURCE_METADATA": ("resource_metadata", lambda v: _boolish(v)),
    "PORTCULLIS_SCOPES_SUPPORTED": ("scopes_supported", lambda v: _names(v)),
    "PORTCULLIS_RESOURCE_NAME": ("resource_name", str),
    "PORTCULLIS_RESOURCE_DOCUMENTATION": ("resource_documentation", str),
    "PORTCULLIS_RESOURCE_POLICY_URI": ("resource_policy_uri", str),
    "PORTCULLIS_RESOURCE_TOS_URI": ("resource_tos_uri", str),
}

_SCOPES_ATTR = "__portcullis_scopes__"


def _boolish(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("auto", ""):
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _names(value: Any) -> list[str]:
    return value.split() if isinstance(value, str) else [str(v) for v in value]


class PortcullisAuth:
    """Flask extension: ``PortcullisAuth(app)`` reads its settings from ``app.config``.

    Required: ``PORTCULLIS_ISSUER`` and ``PORTCULLIS_AUDIENCE``. Optional (see ``CONFIG`` and
    ``ResourceServer``): ``PORTCULLIS_JWKS_URL``, ``PORTCULLIS_JWKS_MIN_REFRESH_INTERVAL`` (s,
    10), ``PORTCULLIS_JWKS_DEFAULT_MAX_AGE`` (s, 300), ``PORTCULLIS_JWKS_TIMEOUT`` (s, 5),
    ``PORTCULLIS_LEEWAY`` (s, nbf/iat, 30), ``PORTCULLIS_EXP_LEEWAY`` (s, 0),
    ``PORTCULLIS_REALM`` (``api``), ``PORTCULLIS_DPOP_MODE`` (``allowed``, ``required``,
    ``disabled``), ``PORTCULLIS_DPOP_MAX_AGE`` (60), ``PORTCULLIS_DPOP_MAX_FUTURE`` (5),
    ``PORTCULLIS_DPOP_REPLAY_CACHE_SIZE`` (100000), ``PORTCULLIS_EXTERNAL_BASE_URL``;
    RFC 9728: ``PORTCULLIS_RESOURCE`` (default: the audience), ``PORTCULLIS_RESOURCE_METADATA``
    (``auto``, true, false), ``PORTCULLIS_SCOPES_SUPPORTED`` (default: the scopes the views
    require), ``PORTCULLIS_RESOURCE_NAME``, ``PORTCULLIS_RESOURCE_DOCUMENTATION``,
    ``PORTCULLIS_RESOURCE_POLICY_URI``, ``PORTCULLIS_RESOURCE_TOS_URI``.

    Keyword arguments are ``ResourceServer`` arguments and take precedence over the config:
    ``external_base_url``, ``replay_cache`` (a shared ``ReplayCache``), ``jwks`` (a key source:
    a ``JWKSCache`` or any ``jwt.PyJWKClient``), ….
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        self._server: ResourceServer | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        settings: dict[str, Any] = {}
        for key, (name, convert) in CONFIG.items():
            value = app.config.get(key)
            if value is not None and value != "":
                try:
                    settings[name] = convert(value)
                except ValueError as e:
                    raise RuntimeError(f"{key}: {e}") from None
        settings.update(self.options)
        if not settings.get("issuer"):
            raise RuntimeError("PORTCULLIS_ISSUER must be set (e.g. http://127.0.0.1:8080)")
        if not settings.get("audience"):
            raise RuntimeError("PORTCULLIS_AUDIENCE must be set: this service's resource "
                               "identifier (e.g. https://inference.example.com)")
        if str(settings.get("dpop_mode") or "allowed").lower() not in _DPOP_MODES:
            raise RuntimeError(f"PORTCULLIS_DPOP_MODE must be one of {', '.join(_DPOP_MODES)}")
        if settings.get("external_base_url"):
            try:
                check_base_url(settings["external_base_url"], "PORTCULLIS_EXTERNAL_BASE_URL")
            except ValueError as e:
                raise RuntimeError(str(e)) from None
        try:
            self._server = ResourceServer(**settings)
        except ValueError as e:
            raise RuntimeError(f"PortcullisAuth: {e}") from None
        app.extensions[EXTENSION] = self
        # current_principal() may also be called from an undecorated view: same answers.
        app.register_error_handler(AuthFailure, self.response)
        path = self.server.resource_metadata_path
        if path is not None:
            app.add_url_rule(path, endpoint="portcullis_protected_resource_metadata",
                             view_func=self._metadata_view, methods=["GET"])

    # -- accessors ----------------------------------------------------------------------------

    @property
    def server(self) -> ResourceServer:
        if self._server is None:
            raise RuntimeError("PortcullisAuth.init_app(app) was not called")
        return self._server

    @property
    def jwks(self) -> KeySource:
        """The key source (a ``JWKSCache`` unless another was given)."""
        return self.server.jwks

    @property
    def dpop(self) -> DPoPVerifier:
        return self.server.dpop

    @property
    def verifier(self) -> TokenVerifier:
        return self.server.verifier

    @property
    def external_base_url(self) -> str | None:
        return self.server.external_base_url

    def request_url(self) -> str:
        """This request's URL as the client addressed it, without query: what ``htu`` names."""
        return self.server.request_url(request.root_url, request.path)

    # -- answers ------------------------------------------------------------------------------

    def response(self, failure: AuthFailure) -> Response:
        rendered = self.server.render(failure)
        resp = jsonify(rendered.body)
        resp.status_code = rendered.status
        for name, value in rendered.headers:
            if name == "WWW-Authenticate":
                resp.headers.add(name, value)
            else:
                resp.headers[name] = value
        return resp

    def _metadata_view(self) -> Response:
        scopes: set[str] = set()
        for view in current_app.view_functions.values():
            scopes.update(getattr(view, _SCOPES_ATTR, ()))
        metadata = self.server.metadata(scopes)
        assert metadata is not None
        resp = jsonify(metadata.to_dict())
        for name, value in METADATA_HEADERS:
            resp.headers[name] = value
        return resp


def _extension() -> PortcullisAuth:
    ext = current_app.extensions.get(EXTENSION)
    if not isinstance(ext, PortcullisAuth):
        raise RuntimeError("PortcullisAuth(app) was not set up for this app")
    return ext


def current_principal() -> Principal:
    """This request's verified ``Principal`` (verifying the token on first use).

    Raises ``AuthFailure``, which ``PortcullisAuth`` answers (401, 400 or 503).
    """
    principal = g.get("portcullis_principal")
    if isinstance(principal, Principal):
        return principal
    ext = _extension()
    principal = ext.server.authenticate(
        method=request.method, url=ext.request_url(),
        authorization=request.headers.get("Authorization"),
        dpop_proofs=request.headers.getlist("DPoP"),
    )
    g.portcullis_principal = principal
    return principal


def current_claims() -> dict[str, Any]:
    """The verified claims of this request's token (see ``current_principal``)."""
    return dict(current_principal().claims)


def _guard(scopes: Iterable[str] = (), roles: Iterable[str] = ()) -> Callable[[F], F]:
    """A view decorator: the request's token must be valid, with these scopes and roles."""
    wanted_scopes, wanted_roles = list(scopes), list(roles)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ext = _extension()
            try:
                ext.server.authorize(current_principal(), scopes=wanted_scopes,
                                     roles=wanted_roles)
            except AuthFailure as failure:
                return ext.response(failure)
            return view(*args, **kwargs)

        # Scopes the view needs, for scopes_supported in the RFC 9728 document.
        setattr(wrapper, _SCOPES_ATTR,
                frozenset(getattr(view, _SCOPES_ATTR, ())) | frozenset(wanted_scopes))
        return cast(F, wrapper)

    return decorator


@overload
def token_required(view: F) -> F: ...
@overload
def token_required(view: None = None) -> Callable[[F], F]: ...
def token_required(view: F | None = None) -> F | Callable[[F], F]:
    """A valid access token for this service is required. ``@token_required`` or ``()``."""
    decorator: Callable[[F], F] = _guard()
    return decorator(view) if view is not None else decorator


def scope_required(*scopes: str) -> Callable[[F], F]:
    """Every listed scope must be in the token's ``scope`` (403 ``insufficient_scope``)."""
    return _guard(scopes=flatten_names(scopes))


def role_required(*roles: str) -> Callable[[F], F]:
    """Every listed role must be in the token's ``roles`` (403 ``insufficient_role``).

    Roles are not an OAuth error code, so the 403 carries no challenge.
    """
    return _guard(roles=flatten_names(roles))


def config_from_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``PORTCULLIS_*`` entries of ``values`` (``os.environ``, say), for ``app.config``."""
    return {k: v for k, v in values.items() if k in CONFIG and v not in (None, "")}

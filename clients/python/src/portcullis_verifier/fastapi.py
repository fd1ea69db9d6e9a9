"""FastAPI: dependencies that verify Portcullis access tokens.

    auth = PortcullisAuth(issuer="https://auth.example.com",
                          audience="https://inference.example.com")
    app = FastAPI()
    auth.install(app)        # the RFC 9728 document, and 401/403/503 answers as in Flask

    @app.post("/v1/models/{model_id}/predict")
    def predict(model_id: str,
                who: Principal = Depends(auth.scope_required("models:invoke"))):
        ...

The dependencies are plain functions: FastAPI runs them in its thread pool, so a JWKS fetch
never blocks the event loop. A request's token is verified once, whatever the number of
dependencies (a DPoP proof is single use). Install with
``pip install portcullis-verifier[fastapi]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from .core import AuthFailure, Principal, Rendered, ResourceServer, flatten_names
from .metadata import METADATA_HEADERS

__all__ = ["PortcullisAuth", "PortcullisHTTPException"]

Dependency = Callable[[Request], Principal]


class PortcullisHTTPException(HTTPException):
    """An ``AuthFailure`` as a FastAPI ``HTTPException``.

    With ``PortcullisAuth.install(app)``, it is answered with the JSON body of the Flask layer
    (``{"error": …, "error_description": …}``) and one ``WWW-Authenticate`` header per
    challenge. Without it, FastAPI's default handler still answers the right status and
    challenges (joined in one header, as RFC 9110 §11.6.1 allows), the body under ``detail``.
    """

    def __init__(self, failure: AuthFailure, rendered: Rendered) -> None:
        headers: dict[str, str] = {}
        for name, value in rendered.headers:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        super().__init__(status_code=rendered.status, detail=rendered.body, headers=headers)
        self.failure = failure
        self.rendered = rendered


class PortcullisAuth:
    """The FastAPI integration. Takes a ``ResourceServer``, or its keyword arguments.

    ``install(app)`` adds the exception handler and the RFC 9728 metadata route. The
    dependencies (``token_required``, ``scope_required(...)``, ``role_required(...)``,
    ``requires(scopes=…, roles=…)``) answer the request's ``Principal``.
    """

    def __init__(self, server: ResourceServer | None = None, *, app: FastAPI | None = None,
                 **options: Any) -> None:
        if server is not None and options:
            raise TypeError("give a ResourceServer or its arguments, not both")
        self.server = server if server is not None else ResourceServer(**options)
        self._scopes: set[str] = set()  # every scope a dependency requires
        self.token_required: Dependency = self.requires()
        if app is not None:
            self.install(app)

    def install(self, app: FastAPI) -> None:
        app.add_exception_handler(PortcullisHTTPException, self._handle)  # type: ignore[arg-type]
        path = self.server.resource_metadata_path
        if path is not None:
            app.add_api_route(path, self.metadata_response, methods=["GET"],
                              include_in_schema=False,
                              name="portcullis_protected_resource_metadata")

    # -- dependencies -------------------------------------------------------------------------

    def principal(self, request: Request) -> Principal:
        """This request's verified ``Principal`` (verified once per request, then cached)."""
        cached = getattr(request.state, "portcullis_principal", None)
        if isinstance(cached, Principal):
            return cached
        try:
            principal = self.server.authenticate(
                method=request.method, url=self.request_url(request),
                authorization=request.headers.get("authorization"),
                dpop_proofs=request.headers.getlist("dpop"),
            )
        except AuthFailure as failure:
            raise self.exception(failure) from None
        request.state.portcullis_principal = principal
        return principal

    def requires(self, *, scopes: Iterable[str] = (), roles: Iterable[str] = ()) -> Dependency:
        """A dependency: a valid token with every scope in ``scopes`` and role in ``roles``."""
        wanted_scopes = flatten_names(scopes) if scopes else []
        wanted_roles = flatten_names(roles) if roles else []
        self._scopes.update(wanted_scopes)

        def dependency(request: Request) -> Principal:
            principal = self.principal(request)
            try:
                self.server.authorize(principal, scopes=wanted_scopes, roles=wanted_roles)
            except AuthFailure as failure:
                raise self.exception(failure) from None
            return principal

        return dependency

    def scope_required(self, *scopes: str) -> Dependency:
        """Every listed scope must be in the token's ``scope`` (403 ``insufficient_scope``)."""
        return self.requires(scopes=flatten_names(scopes))

    def role_required(self, *roles: str) -> Dependency:
        """Every listed role must be in the token's ``roles`` (403 ``insufficient_role``)."""
        return self.requires(roles=flatten_names(roles))

    # -- plumbing -----------------------------------------------------------------------------

    def request_url(self, request: Request) -> str:
        """The URL the client addressed, without query: what a DPoP proof's ``htu`` names."""
        path: str = request.scope.get("path", "/")
        root: str = request.scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        return self.server.request_url(str(request.base_url), path)

    def exception(self, failure: AuthFailure) -> PortcullisHTTPException:
        return PortcullisHTTPException(failure, self.server.render(failure))

    def response(self, failure: AuthFailure) -> Response:
        rendered = self.server.render(failure)
        resp = JSONResponse(rendered.body, status_code=rendered.status)
        for name, value in rendered.headers:
            resp.headers.append(name, value)
        return resp

    async def _handle(self, request: Request, exc: PortcullisHTTPException) -> Response:
        return self.response(exc.failure)

    def metadata_response(self) -> Response:
        """The RFC 9728 document (``GET`` at ``server.resource_metadata_path``)."""
        metadata = self.server.metadata(self._scopes)
        if metadata is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(metadata.to_dict(), headers=dict(METADATA_HEADERS))

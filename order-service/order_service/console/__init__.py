"""The operator console: one page at /console, served by the order service, that shows stock, orders
and the saga's health and acts through the services' own APIs.

The page itself carries no data and needs no token: its script (static/console.js) signs in with the
admin token, keeps it in sessionStorage and sends it as a bearer header on each API call (the order
service's endpoints and the admin API in console/api.py). Same origin only, under a strict
Content-Security-Policy; every value is written into the page as text, never as markup.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template, request

from order_service.console.api import console_api_blueprint, saga_health

__all__ = ["console_api_blueprint", "register_console", "saga_health"]

# No inline script or style, nothing from elsewhere; forms are never submitted by the browser (the script
# sends JSON), so a form can never put the token in a URL even if the script did not load.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


def console_blueprint() -> Blueprint:
    bp = Blueprint(
        "console",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/console/static",
    )

    @bp.get("/console")
    def page() -> str:
        return render_template("console/index.html")

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if request.endpoint == "console.page":
            response.headers["Cache-Control"] = "no-store"
        return response

    return bp


def register_console(app: Flask) -> None:
    app.register_blueprint(console_blueprint())
